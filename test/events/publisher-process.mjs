// A publisher in its own process, so a test can kill -9 it and watch the broker publish its will.
// Usage: node publisher-process.mjs <db path> <broker url> <topic root> <client id>
import { Outbox, Publisher } from '../../dist/events/index.js';
import { openDatabase } from '../../dist/storage/index.js';

const [dbPath, url, topicRoot, clientId] = process.argv.slice(2);
const publisher = new Publisher(new Outbox(openDatabase(dbPath)), {
  url, topicRoot, clientId, site: 'plant1', line: 'l2', camera: 'cam3', statsIntervalMs: 0,
});
publisher.start();
const timer = setInterval(() => {
  if (!publisher.status().connected) return;
  clearInterval(timer);
  process.stdout.write('connected\n');
}, 20);
