/**
 * Waiting on things that arrive (messages, notifications): a test waits until `done(items)` holds,
 * and fails after a deadline saying what it waited for and what came.
 */
export interface Arrivals<T> {
  /** Call after every item pushed: wakes the waits. */
  arrived(): void;
  waitFor(done: (items: T[]) => boolean, timeoutMs: number, what: () => string): Promise<void>;
}

export function arrivals<T>(items: T[]): Arrivals<T> {
  const waiters = new Set<() => void>();
  return {
    arrived: () => {
      for (const wake of waiters) wake();
    },
    waitFor: (done, timeoutMs, what) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (!done(items)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
  };
}
