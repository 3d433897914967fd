/**
 * Runs the real CLI (`node dist/cli/main.js`) as a child process, as a plant engineer would,
 * and reads its JSON log lines.
 *
 *   const d = runLinewatch(['run', '--config', file]);
 *   await d.waitForLog((l) => l.msg === 'running');
 *   const code = await d.stop();              // SIGTERM, resolves with the exit code
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import YAML from 'yaml';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const cliPath = join(repoRoot, 'dist/cli/main.js');
export const tinyModel = join(repoRoot, 'test/fixtures/tiny-model');

export interface LogLine {
  level: string;
  component: string;
  msg: string;
  [key: string]: unknown;
}

export interface RunningLinewatch {
  child: ChildProcess;
  logs: LogLine[];
  stdout: () => string;
  stderr: () => string;
  waitForLog(match: (line: LogLine, all: LogLine[]) => boolean, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<number | null>;
  /** The exit code once it exits by itself (a play-once replay); rejects after timeoutMs with its stderr. */
  waitForExit(timeoutMs?: number): Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function runLinewatch(args: string[], env: NodeJS.ProcessEnv = {}): RunningLinewatch {
  const child = spawn(process.execPath, [cliPath, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let partial = '';
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString();
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        // Not a log line (an error message for the user): kept in stderr().
      }
    }
    for (const wake of waiters) wake();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  void exited.then(() => {
    for (const wake of waiters) wake();
  });
  let done = false;
  void exited.then(() => (done = true));

  return {
    child,
    logs,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForLog(match, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find((l) => match(l, logs));
          if (found) {
            cleanup();
            resolve(found);
          } else if (done) {
            cleanup();
            reject(new Error(`linewatch exited before a log line matching ${match.toString()}; stderr:\n${err.slice(-3000)}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for a log line matching ${match.toString()}; stderr:\n${err.slice(-3000)}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    waitForExit(timeoutMs = 50_000) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`linewatch ${args[0]} did not exit within ${timeoutMs} ms; stderr:\n${err.slice(-3000)}`)), timeoutMs);
      });
      return Promise.race([exited, late]).finally(() => clearTimeout(timer));
    },
    async stop(signal = 'SIGTERM') {
      if (!done) child.kill(signal);
      return exited;
    },
  };
}

/** Runs a one-shot CLI command to completion. */
export function runCommand(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = runLinewatch(args, env);
  return run.exited.then((code) => ({ code, stdout: run.stdout(), stderr: run.stderr() }));
}

export function tempDir(prefix = 'linewatch-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes a config file (YAML from an object) into `dir` and returns its path. */
export function writeConfig(dir: string, config: Record<string, unknown>): string {
  const path = join(dir, 'config.yml');
  writeFileSync(path, YAML.stringify(config));
  return path;
}

/**
 * The config of a line on the tiny model whose every frame is an anomaly (threshold 0): a steady
 * stream of events, `frames` replayed in a loop at `fps`. JSON logs, a free status port.
 */
export async function anomalyStreamConfig(
  dir: string,
  line: { site: string; frames: string; fps: number; mqtt: Record<string, unknown>; stateDir?: string },
): Promise<string> {
  return writeConfig(dir, {
    site: line.site,
    line: 'line-1',
    camera: 'cam-1',
    stateDir: line.stateDir ?? join(dir, 'state'),
    model: tinyModel,
    capture: { source: 'replay', replay: { folder: line.frames, fps: line.fps, loop: true } },
    enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
    knn: { threshold: 0 },
    mqtt: line.mqtt,
    http: { port: 0 },
    log: { format: 'json' },
  });
}

/**
 * A tiny labeled image set: gray gradients as `good`, gradients with a bright square as `scratch`.
 * Returns the folder (one subfolder per label).
 */
export async function makeLabeledImages(dir: string, perLabel = 4): Promise<string> {
  for (const label of ['good', 'scratch']) {
    mkdirSync(join(dir, label), { recursive: true });
    for (let i = 0; i < perLabel; i++) {
      const pixels = Buffer.alloc(28 * 28);
      for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) pixels[y * 28 + x] = (x * 9 + i * 7) % 256;
      if (label === 'scratch') for (let y = 8; y < 20; y++) for (let x = 8; x < 20; x++) pixels[y * 28 + x] = 255;
      await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(join(dir, label, `${label}-${i}.png`));
    }
  }
  return dir;
}
