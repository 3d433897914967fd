/**
 * Real Mosquitto for tests.
 *
 *   const broker = await startMosquitto();            // 127.0.0.1, free port, anonymous allowed
 *   const sub = await collectMessages(broker.url, 'linewatch/#');
 *   ...publish...
 *   await sub.waitFor((msgs) => msgs.length >= 3);
 *   await broker.restart();                            // same port
 *   await sub.close(); await broker.stop();
 *
 * When the test process exits (even by SIGKILL) the broker is stopped and its temp dir removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { canConnect, freePort } from '../../dist/bench/broker.js';
import { suspendProcess } from './processes.js';

export { freePort };

const MOSQUITTO = '/usr/sbin/mosquitto';

export interface MosquittoOptions {
  /** Default: a free port. */
  port?: number;
  /** Keep sessions and queued messages across restart() (saved on stop). Default false. */
  persistence?: boolean;
  /** Default true; false makes every client without credentials "Not authorized". */
  allowAnonymous?: boolean;
  /**
   * Lines for the listener (TLS files, require_certificate, acl_file...), written right after it.
   * When they set allow_anonymous, `allowAnonymous` is not written.
   */
  listenerConfig?: string[];
  /** The listener speaks TLS: `url` is `mqtts://`. Default false. */
  tls?: boolean;
  /** Lines after everything else: a bridge (`connection ...` and its settings). */
  extraConfig?: string[];
}

export interface Mosquitto {
  /** `mqtt://127.0.0.1:<port>` (`mqtts://` with `tls`) */
  url: string;
  port: number;
  /** Stops the broker (SIGTERM: clients see the connection close). Idempotent. */
  stop(): Promise<void>;
  /** Stops and starts it again on the same port; resolves once it accepts connections. */
  restart(): Promise<void>;
  /** Suspends the broker (SIGSTOP): connections stay open, nothing is read or acknowledged. */
  freeze(): Promise<void>;
  /** Ends the broker at once (SIGKILL, frozen or not): connections drop, nothing is saved. */
  kill(): Promise<void>;
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'linewatch-mosquitto-'));
  const config = join(dir, 'mosquitto.conf');
  writeFileSync(
    config,
    [
      `listener ${port} 127.0.0.1`,
      ...(options.listenerConfig ?? []),
      ...(options.listenerConfig?.some((line) => /^\s*allow_anonymous\b/.test(line)) ? [] : [`allow_anonymous ${options.allowAnonymous ?? true}`]),
      // As root, mosquitto would switch to a "mosquitto" user that cannot write the temp dir.
      `user ${userInfo().username}`,
      `persistence ${options.persistence ?? false}`,
      `persistence_location ${dir}/`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      ...(options.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  const reaper = startReaper(dir);
  let broker: ChildProcess | null = null;

  const start = async (): Promise<void> => {
    let log = '';
    const child = spawn(MOSQUITTO, ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-4000);
    });
    broker = child;
    reaper.write(`${child.pid}\n`);
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(port))) {
      if (child.exitCode !== null) throw new Error(`mosquitto exited (${child.exitCode}): ${log}`);
      if (Date.now() > deadline) throw new Error(`mosquitto did not listen on port ${port} within 10 s: ${log}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const end = async (signal: NodeJS.Signals): Promise<void> => {
    const child = broker;
    broker = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    // A frozen broker acts on SIGTERM only once it runs again.
    child.kill('SIGCONT');
    await exited;
    reaper.write('-\n');
  };
  const stop = () => end('SIGTERM');

  await start();
  return {
    url: `${options.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    freeze: async () => {
      const pid = broker?.pid;
      if (pid === undefined) throw new Error('freeze(): the broker is not running');
      await suspendProcess(pid, 'mosquitto');
    },
    kill: () => end('SIGKILL'),
  };
}

/**
 * A shell that outlives this process by a moment: when its stdin (a pipe from us) closes, which
 * the kernel does even if we die by SIGKILL, it stops the last broker we told it about and
 * removes the broker's temp dir.
 */
function startReaper(dir: string): { write(line: string): void } {
  const script = 'pid=-; while read p; do pid=$p; done; [ "$pid" = - ] || { kill "$pid"; kill -CONT "$pid"; } 2>/dev/null; rm -rf "$1"';
  const reaper = spawn('/bin/sh', ['-c', script, 'sh', dir], { stdio: ['pipe', 'ignore', 'ignore'] });
  return { write: (line) => reaper.stdin?.write(line) };
}

export interface ReceivedMessage {
  topic: string;
  /** UTF-8 text of the payload. */
  payload: string;
  retain: boolean;
  receivedAt: number;
}

export interface CollectOptions {
  /**
   * Keep a broker session (clean: false, this clientId, session expiry 300 s) so QoS 1 messages
   * published while this subscriber is disconnected are queued for it. Needs `persistence` on the
   * broker to survive a broker restart.
   */
  persistentClientId?: string;
  /** Default 1. */
  qos?: 0 | 1;
  /** PEM files for a TLS broker: its CA, and this client's certificate and key. */
  tls?: { ca: string; cert: string; key: string };
}

export interface Collector {
  /** Every message received so far, in arrival order (duplicates included). */
  readonly messages: ReceivedMessage[];
  /** Resolves once `done(messages)` is true; rejects after timeoutMs (default 10 s) with what arrived. */
  waitFor(done: (messages: ReceivedMessage[]) => boolean, timeoutMs?: number): Promise<ReceivedMessage[]>;
  close(): Promise<void>;
}

/** Subscribes to `topic` (wildcards allowed) and collects what arrives; reconnects every 100 ms. */
export async function collectMessages(url: string, topic: string, options: CollectOptions = {}): Promise<Collector> {
  const persistent = options.persistentClientId !== undefined;
  const clientOptions: IClientOptions = {
    protocolVersion: 5,
    reconnectPeriod: 100,
    connectTimeout: 5_000,
    clean: !persistent,
    ...(persistent && { clientId: options.persistentClientId, properties: { sessionExpiryInterval: 300 } }),
    ...(options.tls && { ca: readFileSync(options.tls.ca), cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) }),
  };
  const client: MqttClient = connect(url, clientOptions);
  client.on('error', () => {
    // Broker restarts are expected in tests; the client reconnects by itself.
  });
  const messages: ReceivedMessage[] = [];
  const waiters = new Set<() => void>();
  client.on('message', (t, payload, packet) => {
    messages.push({ topic: t, payload: payload.toString('utf8'), retain: packet.retain, receivedAt: Date.now() });
    for (const waiter of waiters) waiter();
  });
  await whenConnected(client, url, 'subscriber');
  await client.subscribeAsync(topic, { qos: options.qos ?? 1 });

  return {
    messages,
    waitFor: (done, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (!done(messages)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(messages);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms; received ${messages.length} messages: ${messages.slice(-5).map((m) => `${m.topic} ${m.payload.slice(0, 80)}`).join(' | ')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    close: () => client.endAsync(true),
  };
}

/**
 * Resolves on the client's first connect. A client that retries by itself would otherwise wait for
 * ever: after timeoutMs it is ended and the wait fails naming `who`.
 */
export function whenConnected(client: MqttClient, url: string, who: string, timeoutMs = 10_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.end(true);
      reject(new Error(`the ${who} could not connect to ${url} within ${timeoutMs} ms`));
    }, timeoutMs);
    client.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
