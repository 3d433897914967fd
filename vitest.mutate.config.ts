import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Mutation testing (npm run mutate): Stryker instruments the TypeScript in src/, but the tests
// import the compiled package from dist/. Rather than rebuild dist/ for every mutant, the tests'
// `../../dist/<module>.js` imports are pointed at `src/<module>.ts`, which vitest compiles in
// process, so every mutant is exactly what the tests run. Only in-process unit tests are listed:
// a spawned daemon or a worker thread would run dist/ and see no mutant.
const src = fileURLToPath(new URL('./src/', import.meta.url));

/** The tests that exercise the mutated modules (stryker.config.json `mutate`); MUTATE_TESTS narrows a run to some. */
const unitTests = [
  'test/knn/classifier.test.ts',
  'test/knn/decide.test.ts',
  'test/knn/vector-index.test.ts',
  'test/knn/evaluate.test.ts',
  'test/events/outbox.test.ts',
  'test/storage/reserve.test.ts',
  'test/events/publisher.test.ts',
  'test/events/drain.test.ts',
  'test/capture/jpeg-splitter.test.ts',
  'test/capture/frame-queue.test.ts',
  'test/capture/raw-frames.test.ts',
  'test/config/config.test.ts',
  'test/daemon/reload.test.ts',
  'test/control/api.test.ts',
];

export default defineConfig({
  resolve: {
    alias: [{ find: /^(?:\.\.\/)+dist\/(.*)\.js$/, replacement: `${src}$1.ts` }],
  },
  test: {
    include: process.env['MUTATE_TESTS']?.split(',') ?? unitTests,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 30_000,
    // Instrumented code on a busy machine: the HNSW fixture (5000 vectors, built in beforeAll) took over vitest's default 10 s.
    hookTimeout: 60_000,
  },
});
