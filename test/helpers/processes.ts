import { readFileSync } from 'node:fs';

/** Name and state letter from /proc/<pid>/stat (T once stopped); null once the process is gone. */
function processState(pid: number): { name: string; state: string } | null {
  try {
    const match = /\((.*)\) (\S) /.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return match ? { name: match[1]!, state: match[2]! } : null;
  } catch {
    return null;
  }
}

/** SIGSTOP, and return once the kernel has it stopped (a signal is delivered asynchronously). */
export async function suspendProcess(pid: number, what: string): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  const deadline = Date.now() + 10_000;
  while (processState(pid)?.state !== 'T') {
    if (Date.now() > deadline) throw new Error(`${what} (pid ${pid}) did not stop within 10 s of SIGSTOP`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Kills a process a test suspended, if it is still that process and still stopped: a test that
 * failed early would leave it behind, and its PID may since belong to another program.
 */
export function killIfStillSuspended(pid: number, name: string): void {
  const now = processState(pid);
  if (now?.name === name && now.state === 'T') process.kill(pid, 'SIGKILL');
}
