import { createRequire } from 'node:module';
import { errorText, type Logger } from '../common/index.js';

/**
 * systemd's sd_notify protocol (READY=1, WATCHDOG=1, STOPPING=1, STATUS=...) over NOTIFY_SOCKET.
 *
 * Node has no unix datagram sockets (node:dgram is UDP only, node:net is stream only), and
 * NOTIFY_SOCKET is a SOCK_DGRAM socket. The ways around it, and why this one:
 * - `systemd-notify` as a child: systemd attributes a message to a unit by the sender's PID; a
 *   child that exits before systemd reads its datagram is dropped (the documented race), and it
 *   needs NotifyAccess=all, letting any process of the service (gst-launch, rpicam-vid) speak.
 * - the `sd-notify` addon links libsystemd: libsystemd-dev on every build machine and device.
 * - a long-lived python3/socat helper: a second process to supervise, and NotifyAccess=all again.
 * - `unix-dgram` (used here): a small addon that needs nothing beyond libc, compiled by
 *   node-gyp like better-sqlite3 and hnswlib-node already are. The daemon's own PID sends, so the
 *   unit keeps the strictest NotifyAccess=main and no message can race its sender's exit.
 */
interface DgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error & { code?: unknown }) => void): void;
  on(event: 'writable' | 'error', listener: (...args: unknown[]) => void): void;
  close(): void;
}

const require = createRequire(import.meta.url);

export interface WatchdogSettings {
  /** systemd kills the service when no WATCHDOG=1 arrives for this long. */
  intervalMs: number;
}

export class SystemdNotifier {
  private queue: string[] = [];
  private warned = false;
  private closed = false;

  private constructor(
    private readonly socket: DgramSocket,
    private readonly path: string,
    /** Set when systemd expects watchdog pings from this process. */
    readonly watchdog: WatchdogSettings | null,
    private readonly log: Logger,
  ) {
    socket.on('writable', () => this.flush());
    socket.on('error', (err) => this.warnOnce(errorText(err)));
  }

  /**
   * Null when not run by systemd (no NOTIFY_SOCKET). Removes NOTIFY_SOCKET and WATCHDOG_* from
   * the environment, as sd_notify does, so camera processes started later cannot inherit them.
   */
  static fromEnvironment(log: Logger, env: NodeJS.ProcessEnv = process.env): SystemdNotifier | null {
    const path = env['NOTIFY_SOCKET'];
    const usec = Number(env['WATCHDOG_USEC']);
    const pid = env['WATCHDOG_PID'];
    delete env['NOTIFY_SOCKET'];
    delete env['WATCHDOG_USEC'];
    delete env['WATCHDOG_PID'];
    if (!path) return null;
    if (!path.startsWith('/')) {
      // Abstract (@...) and vsock addresses are not used for system services on Debian 12 / Ubuntu 22.04.
      log.warn('NOTIFY_SOCKET is not a socket path; systemd will not be told when linewatch is ready', { notifySocket: path });
      return null;
    }
    const { createSocket } = require('unix-dgram') as { createSocket(type: 'unix_dgram'): DgramSocket };
    const watchdog = Number.isFinite(usec) && usec > 0 && (!pid || Number(pid) === process.pid) ? { intervalMs: usec / 1000 } : null;
    return new SystemdNotifier(createSocket('unix_dgram'), path, watchdog, log);
  }

  /** Sends one notification, e.g. `{ READY: '1', STATUS: 'running' }`; never throws. */
  notify(fields: Record<string, string>): void {
    if (this.closed) return;
    this.queue.push(
      Object.entries(fields)
        .map(([key, value]) => `${key}=${value.replace(/\n/g, ' ')}`)
        .join('\n'),
    );
    if (this.queue.length === 1) this.flush();
  }

  /** Sends what is queued; a full socket buffer ("congestion") keeps the rest for the next 'writable'. */
  private flush(): void {
    while (this.queue.length > 0 && !this.closed) {
      const message = Buffer.from(this.queue[0]!);
      let congested = false;
      this.socket.send(message, 0, message.length, this.path, (err) => {
        if (err && err.message === 'congestion') congested = true;
        else if (err) this.warnOnce(errorText(err));
      });
      if (congested) return;
      this.queue.shift();
    }
  }

  private warnOnce(error: string): void {
    if (this.warned) return;
    this.warned = true;
    this.log.warn('cannot notify systemd', { notifySocket: this.path, error });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}

/**
 * Sends WATCHDOG=1 only while the pipeline makes progress, so systemd restarts a daemon whose
 * camera delivers nothing or whose inference is wedged, not just one whose event loop is stuck.
 * `progress` is a count that grows with every frame the pipeline finishes. Checked every quarter
 * interval; a ping goes out while the count grew within the last half interval, so pings stop
 * about half an interval after the last frame and systemd acts one interval later.
 */
export class Watchdog {
  private timer: NodeJS.Timeout | null = null;
  private lastCount = -1;
  private lastProgressAt = Date.now();

  constructor(
    private readonly notifier: SystemdNotifier,
    private readonly intervalMs: number,
    private readonly progress: () => number,
  ) {}

  start(): void {
    this.check();
    this.timer = setInterval(() => this.check(), Math.max(this.intervalMs / 4, 10));
  }

  private check(): void {
    const now = Date.now();
    const count = this.progress();
    if (count !== this.lastCount) {
      this.lastCount = count;
      this.lastProgressAt = now;
    }
    if (now - this.lastProgressAt <= this.intervalMs / 2) this.notifier.notify({ WATCHDOG: '1' });
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
