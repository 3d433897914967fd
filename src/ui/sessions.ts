import { randomBytes } from 'node:crypto';
import type { Role } from './accounts.js';

export interface Session {
  id: string;
  /** null: the open session of a loopback UI with no accounts (it ends once an account exists). */
  user: string | null;
  role: Role;
  /** Sent back by the page's script in the `x-csrf-token` header on every change. */
  csrf: string;
  lastUsed: number;
}

const maxSessions = 10_000;
const token = (): string => randomBytes(32).toString('base64url');

/** Web UI sessions, in memory: a restart logs everyone out, which is fine for a device. */
export class Sessions {
  private readonly byId = new Map<string, Session>();

  constructor(private readonly idleMs: number) {}

  create(user: string | null, role: Role, now = Date.now()): Session {
    this.sweep(now);
    // A client that never sends its cookie back must not grow the map without end: the oldest goes.
    if (this.byId.size >= maxSessions) this.byId.delete(this.byId.keys().next().value!);
    const session = { id: token(), user, role, csrf: token(), lastUsed: now };
    this.byId.set(session.id, session);
    return session;
  }

  /** The live session with this id, marked as used now. */
  get(id: string | undefined, now = Date.now()): Session | undefined {
    const session = id === undefined ? undefined : this.byId.get(id);
    if (!session) return undefined;
    if (now - session.lastUsed > this.idleMs) {
      this.byId.delete(session.id);
      return undefined;
    }
    session.lastUsed = now;
    return session;
  }

  end(id: string): void {
    this.byId.delete(id);
  }

  private sweep(now: number): void {
    for (const session of this.byId.values()) if (now - session.lastUsed > this.idleMs) this.byId.delete(session.id);
  }
}

/** Failed logins per key (client address, account name) within the last minute, a sliding window. */
export class LoginLimiter {
  /** Per key, the times of its latest failures (at most perMinute), oldest first. */
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly perMinute: number) {}

  /** Seconds until another attempt is allowed for every one of `keys`; 0 when it is allowed now. */
  wait(keys: readonly string[], now = Date.now()): number {
    let wait = 0;
    for (const key of keys) {
      const times = this.failures.get(key) ?? [];
      if (times.length >= this.perMinute) wait = Math.max(wait, Math.ceil((times[0]! + 60_000 - now) / 1000));
    }
    return wait;
  }

  failed(keys: readonly string[], now = Date.now()): void {
    // Keys with no failure in the last minute are forgotten, so the map stays small.
    for (const [key, times] of this.failures) if (times.at(-1)! <= now - 60_000) this.failures.delete(key);
    for (const key of keys) {
      const times = (this.failures.get(key) ?? []).filter((t) => t > now - 60_000);
      times.push(now);
      this.failures.set(key, times.slice(-this.perMinute));
    }
  }
}
