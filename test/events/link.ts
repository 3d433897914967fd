/**
 * The events side of the daemon's MQTT wiring, built from its parts as the daemon's Messaging
 * does: one session with the availability will and birth, the outbox drain, the stats reporter.
 */
import { announceAvailability, availabilityWill, OutboxDrain, StatsReporter, type Outbox } from '../../dist/events/index.js';
import { defaultClientId, MqttSession, topicRoot, type SessionOptions } from '../../dist/mqtt/index.js';

export interface LinkOptions extends Partial<SessionOptions> {
  url: string;
  site: string;
  line: string;
  camera: string;
  topicRoot?: string;
  inflight?: number;
  statsIntervalMs?: number;
  stats?: () => Record<string, unknown>;
}

export interface EventLink {
  session: MqttSession;
  start(): void;
  stop(options?: { flushTimeoutMs?: number }): Promise<void>;
  status(): { connected: boolean; url: string; lastError: string | null; reconnects: number; backlog: number; delivered: number; lastPubackAt: string | null };
}

export function eventLink(outbox: Outbox, options: LinkOptions): EventLink {
  const { url, site, line, camera, inflight, statsIntervalMs, stats, ...session } = options;
  const root = topicRoot({ site, line, camera }, options.topicRoot);
  const mqtt = new MqttSession({ url, clientId: defaultClientId({ site, line, camera }), ...session }, availabilityWill(root));
  announceAvailability(mqtt, root);
  const drain = new OutboxDrain(outbox, mqtt, { topicRoot: root, ...(inflight ? { inflight } : {}) });
  const reporter = new StatsReporter(mqtt, { topic: `${root}stats`, intervalMs: statsIntervalMs ?? 0, content: stats ?? (() => ({})) });
  let stopped: Promise<void> | null = null;
  return {
    session: mqtt,
    start() {
      drain.start();
      reporter.start();
      mqtt.start();
    },
    stop(o = {}) {
      stopped ??= (async () => {
        reporter.stop();
        await drain.stop(Date.now() + (o.flushTimeoutMs ?? 5_000));
        await mqtt.stop();
      })();
      return stopped;
    },
    status() {
      return { ...mqtt.status(), ...drain.status(), lastError: mqtt.status().lastError };
    },
  };
}
