/**
 * Started as a fresh process by the kNN bench: opens the database and its saved index the way the
 * daemon does (default index options, the unit's environment) and classifies one vector, then
 * prints one JSON line.
 * Usage: node knn-ready-child.js <database> <modelKey> <dimension>
 */
import { setLogLevel } from '../common/index.js';
import { Classifier, ReferenceStore, VectorIndex } from '../knn/index.js';
import { openDatabase } from '../storage/index.js';
import { allocator } from './as-shipped.js';

setLogLevel('warn');
const [dbPath, modelKey, dimensionText] = process.argv.slice(2);
const dimension = Number(dimensionText);
const opened = performance.now();
const db = openDatabase(dbPath!);
const store = new ReferenceStore(db);
const index = VectorIndex.open(store, { modelKey: modelKey!, dimension });
const classifier = new Classifier(index, store);
const query = new Float32Array(dimension).fill(1 / Math.sqrt(dimension));
const decision = classifier.classify(query);
// performance.now() counts from the start of this process, so this is start-to-ready.
const readyMs = performance.now();
const cpu = process.cpuUsage();
const stats = index.stats();
process.stdout.write(
  JSON.stringify({ readyMs, cpuMs: (cpu.user + cpu.system) / 1000, allocator: allocator(), openMs: readyMs - opened, mode: stats.mode, loadedFrom: stats.loadedFrom, count: stats.count, indexLoadMs: stats.loadMs, label: decision.label }) + '\n',
);
db.close();
