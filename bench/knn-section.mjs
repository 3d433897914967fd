// The kNN section of `linewatch bench` alone (sizes 250 to 100k, then the fresh process that opens
// 100k references and classifies one vector), for start-up and query work without the other sections.
//   npm run build && node bench/knn-section.mjs
import { benchKnn } from '../dist/bench/knn.js';
import { resolveSettings } from '../dist/bench/settings.js';
import { loadavg } from 'node:os';
import { setLogLevel } from '../dist/common/index.js';

setLogLevel('warn');

const before = loadavg()[0].toFixed(2);
const knn = await benchKnn(resolveSettings({ quick: false, durationS: undefined, fp32: undefined, int8: undefined, frames: undefined, configPath: undefined }));
const largest = knn.sizes[knn.sizes.length - 1];
console.log(
  `load ${before} -> ${loadavg()[0].toFixed(2)}; HNSW query at ${largest.references}: p50 ${largest.hnswMs.p50} / mean ${largest.hnswMs.mean} / p99 ${largest.hnswMs.p99} ms, recall@10 ${largest.recallAt10}; ` +
    `ready to classify in a fresh process with ${knn.ready.references} references: ${knn.ready.wallMs} ms, ${knn.ready.cpuMs} ms of CPU (index ${knn.ready.mode} from ${knn.ready.loadedFrom}, open ${knn.ready.openMs} ms, ${knn.ready.allocator})`,
);
