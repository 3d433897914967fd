import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../common/index.js';

const MOSQUITTO = '/usr/sbin/mosquitto';

export interface Broker {
  url: string;
  version: string;
  stop(): Promise<void>;
}

/** A private mosquitto on 127.0.0.1 and a free port, with a temp config; stop() removes it all. */
export async function startBroker(): Promise<Broker> {
  if (!existsSync(MOSQUITTO)) throw new UserError(`the end-to-end bench needs a real MQTT broker and ${MOSQUITTO} is missing`, 'sudo apt-get install mosquitto');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'linewatch-bench-mosquitto-'));
  const config = join(dir, 'mosquitto.conf');
  writeFileSync(
    config,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      // As root, mosquitto would switch to a "mosquitto" user that cannot read the temp dir.
      `user ${userInfo().username}`,
      'persistence false',
      'log_dest stderr',
      'log_type error',
      '',
    ].join('\n'),
  );
  let log = '';
  const child = spawn(MOSQUITTO, ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  // Never leave a broker behind, even when the bench fails or is interrupted.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const stop = async (): Promise<void> => {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`mosquitto did not start on 127.0.0.1:${port}: ${log.trim() || `exit code ${child.exitCode}`}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url: `mqtt://127.0.0.1:${port}`, version: await brokerVersion(), stop };
}

function brokerVersion(): Promise<string> {
  return new Promise((resolve) => {
    // `mosquitto -h` prints "mosquitto version X.Y.Z" and exits non-zero.
    const child = spawn(MOSQUITTO, ['-h'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('close', () => resolve(/version (\S+)/.exec(out)?.[1] ?? 'unknown'));
    child.on('error', () => resolve('unknown'));
  });
}

/** True once something accepts TCP connections on 127.0.0.1:port. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A port nothing listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}
