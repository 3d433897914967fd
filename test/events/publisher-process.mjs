// An MQTT session with linewatch's availability will in its own process, so a test can kill -9 it
// and watch the broker publish the will.
// Usage: node publisher-process.mjs <db path> <broker url> <topic root> <client id>
import { announceAvailability, availabilityWill } from '../../dist/events/index.js';
import { MqttSession } from '../../dist/mqtt/index.js';

const [, url, topicRoot, clientId] = process.argv.slice(2);
const session = new MqttSession({ url, clientId }, availabilityWill(topicRoot));
announceAvailability(session, topicRoot);
session.start();
const timer = setInterval(() => {
  if (!session.connection) return;
  clearInterval(timer);
  process.stdout.write('connected\n');
}, 20);
