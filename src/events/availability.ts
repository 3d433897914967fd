import { errorText } from '../common/index.js';
import { isConnectionClosed, type MqttSession, type SessionMessage } from '../mqtt/index.js';

/** The retained `<topicRoot>available` message as the will: `offline` when the device dies without a word. */
export function availabilityWill(topicRoot: string): () => SessionMessage {
  return () => ({ topic: `${topicRoot}available`, payload: 'offline', qos: 1, retain: true });
}

/**
 * `online` (retained) on every connect, before any event, so a subscriber always sees the device
 * come up first; `offline` on a clean stop.
 */
export function announceAvailability(session: MqttSession, topicRoot: string): void {
  const topic = `${topicRoot}available`;
  session.addBirth(
    (connection) =>
      new Promise((resolve) =>
        connection.publish(topic, 'online', { qos: 1, retain: true }, (err) => {
          if (err && !isConnectionClosed(err)) session.setError(`the MQTT broker at ${session.url} refused the availability message: ${errorText(err)}`);
          resolve();
        }),
      ),
  );
  session.addGoodbye(() => ({ topic, payload: 'offline', qos: 1, retain: true }));
}
