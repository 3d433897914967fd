import { readFileSync } from 'node:fs';

/** The unit deploy/install.sh installs as is. */
const unitFile = new URL('../../systemd/linewatch.service', import.meta.url);

/**
 * The variables the systemd unit sets for the daemon (its `Environment=` lines: the allocator it
 * preloads and that allocator's options). The bench's child processes that stand for the daemon run
 * with them, so they measure the daemon as it ships, and follow the unit when it changes.
 */
export function unitEnvironment(unit = readFileSync(unitFile, 'utf8')): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const line of unit.split('\n')) {
    const assignments = /^Environment=(.*)$/.exec(line)?.[1];
    if (assignments === undefined) continue;
    // systemd's syntax: space-separated NAME=value words, a word in double quotes may hold spaces.
    for (const [, quoted, bare] of assignments.matchAll(/"([^"]*)"|(\S+)/g)) {
      const word = quoted ?? bare!;
      const equals = word.indexOf('=');
      if (equals > 0) environment[word.slice(0, equals)] = word.slice(equals + 1);
    }
  }
  return environment;
}

/**
 * Which malloc this process runs on, with its options: whether the unit's LD_PRELOAD took (ld.so
 * only warns when the library is missing).
 */
export function allocator(): string {
  try {
    if (!readFileSync('/proc/self/maps', 'utf8').includes('jemalloc')) return "the C library's malloc";
    return process.env['MALLOC_CONF'] ? `jemalloc (${process.env['MALLOC_CONF']})` : 'jemalloc';
  } catch {
    return 'unknown';
  }
}

/**
 * Which index loader hnswlib-node runs: the one npm's postinstall rebuilt without per-point seeks,
 * or the published one when that rebuild was skipped, as deploy/hnswlib-loader.mjs itself tells.
 */
export async function hnswlibLoader(): Promise<string> {
  const script = (await import(new URL('../../deploy/hnswlib-loader.mjs', import.meta.url).href)) as { installed(): boolean };
  return script.installed() ? 'without per-point seeks (deploy/hnswlib-loader.mjs)' : 'as published (per-point seeks)';
}
