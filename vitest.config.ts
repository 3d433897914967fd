import { defineConfig } from 'vitest/config';

// Tests import the compiled package from dist/ (built by `pretest`), so worker threads and
// spawned daemons run exactly the JavaScript that ships.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
  },
});
