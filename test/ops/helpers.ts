/**
 * Helpers for the operations tests: a real NOTIFY_SOCKET listener (a unix datagram socket bound by
 * Debian's python3, as systemd binds /run/systemd/notify), replay frames, and HTTP probes.
 */
import { arrivals } from '../helpers/arrivals.js';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

const PYTHON = '/usr/bin/python3';

// Exits when its stdin closes, which the kernel does even when the test process is killed.
const listenerScript = `
import json, os, socket, struct, sys, threading
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
# As systemd does: the kernel attaches the sender's credentials, so we learn which PID spoke.
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sys.argv[1])
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
print(json.dumps(["listening", 0]), flush=True)
while True:
    data, ancillary, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = next((struct.unpack("iII", d[:12])[0] for level, kind, d in ancillary if kind == socket.SCM_CREDENTIALS), 0)
    print(json.dumps([data.decode(), pid]), flush=True)
`;

export interface NotifyListener {
  /** Use as NOTIFY_SOCKET. */
  path: string;
  /** Every datagram received, in order (one notification may hold several NAME=value lines). */
  readonly messages: string[];
  /** The PID that sent each message (from SCM_CREDENTIALS, as systemd checks NotifyAccess). */
  readonly senders: number[];
  waitFor(done: (messages: string[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  close(): void;
}

export async function startNotifyListener(dir: string): Promise<NotifyListener> {
  const path = join(dir, 'notify.sock');
  const child = spawn(PYTHON, ['-c', listenerScript, path], { stdio: ['pipe', 'pipe', 'inherit'] });
  const messages: string[] = [];
  const senders: number[] = [];
  const waits = arrivals(messages);
  let partial = '';
  let listening!: () => void;
  const ready = new Promise<void>((resolve) => (listening = resolve));
  child.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      const [text, pid] = JSON.parse(line) as [string, number];
      if (text === 'listening') {
        listening();
      } else {
        messages.push(text);
        senders.push(pid);
      }
    }
    waits.arrived();
  });
  await ready;
  return {
    path,
    messages,
    senders,
    waitFor: (done, timeoutMs = 30_000, what = 'notifications') =>
      waits.waitFor(done, timeoutMs, () => `${what}; received: ${JSON.stringify(messages.slice(-10))}`),
    close: () => {
      child.stdin!.end();
      child.kill();
    },
  };
}

/** Notifications of one kind, e.g. count(messages, 'WATCHDOG=1'). */
export function count(messages: string[], line: string): number {
  return messages.filter((m) => m.split('\n').includes(line)).length;
}

/** `n` small gray PNG frames named frame-001.png ... in `dir`. */
export async function makeFrames(dir: string, n: number): Promise<string> {
  mkdirSync(dir, { recursive: true });
  for (let i = 1; i <= n; i++) {
    const pixels = Buffer.alloc(28 * 28);
    for (let p = 0; p < pixels.length; p++) pixels[p] = (p * 3 + i * 11) % 256;
    await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(join(dir, `frame-${String(i).padStart(3, '0')}.png`));
  }
  return dir;
}

export async function get(url: string): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(url);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** Polls `probe` every 100 ms until it returns true; rejects after timeoutMs with `what`. */
export async function until(probe: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The status URL the daemon logged in its `running` line (http.port 0 picks a free port). */
export function baseUrl(runningLine: { status?: unknown }): string {
  return String(runningLine.status).replace(/\/status$/, '');
}
