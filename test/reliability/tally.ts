/**
 * The score of a reliability run: each input is probed with a deadline and ends as refused (a clear
 * error), accepted, or a failure (crash, hang, runaway memory); the line adds lost events and RSS.
 * Failures that another change owns are listed as known (with who and why) instead of failing CI.
 */
import { isUserError } from '../../dist/common/index.js';

export type Failure = 'crash' | 'hang' | 'memory';

/** A failure the probe itself found (a wrong answer, a secret echoed): counted as a crash unless it says otherwise. */
export class Defect extends Error {
  constructor(
    message: string,
    readonly kind: Failure = 'crash',
  ) {
    super(message);
  }
}

export interface FailedInput {
  family: string;
  input: string;
  kind: Failure;
  detail: string;
  /** Set when the failure is a known one, owned by another change. */
  known?: string;
}

/** A failure another change fixes: matched by family and detail, kept visible in the table and the report. */
export interface KnownIssue {
  family: string;
  detail: RegExp;
  why: string;
}

interface Row {
  tried: number;
  refused: number;
  accepted: number;
  crash: number;
  hang: number;
  memory: number;
  known: number;
}

/** In-process families: a probe that leaves the test process this much larger has run away. */
const RUNAWAY_RSS_BYTES = 1024 ** 3;

export class Tally {
  readonly rows = new Map<string, Row>();
  readonly failures: FailedInput[] = [];
  readonly line: [string, string][] = [];

  constructor(
    readonly seed: number,
    private readonly knownIssues: readonly KnownIssue[] = [],
  ) {}

  /**
   * Runs one input. `run` resolves with 'accepted' or 'refused', or throws: a UserError is a
   * refusal (a clear error), a Defect or any other error a failure; past `deadlineMs` it is a hang.
   */
  async probe(family: string, input: string, run: () => Promise<'accepted' | 'refused'>, deadlineMs: number): Promise<void> {
    // In-process families are synchronous work awaited through microtasks, which never let the
    // event loop poll: over a minute of them starves vitest's worker RPC ("Timeout calling
    // onTaskUpdate", a failed run although every test passed). One macrotask per input lets it in.
    await new Promise((resolve) => setImmediate(resolve));
    const row = this.row(family);
    row.tried++;
    const rssBefore = process.memoryUsage().rss;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Defect(`no end within ${deadlineMs} ms`, 'hang')), deadlineMs);
    });
    try {
      const outcome = await Promise.race([run(), deadline]);
      const grown = process.memoryUsage().rss - rssBefore;
      if (grown > RUNAWAY_RSS_BYTES) throw new Defect(`the test process grew by ${Math.round(grown / 1024 ** 2)} MB`, 'memory');
      row[outcome]++;
    } catch (err) {
      if (isUserError(err)) {
        row.refused++;
      } else {
        const kind = err instanceof Defect ? err.kind : 'crash';
        const detail = err instanceof Error ? (err instanceof Defect ? err.message : `${err.name}: ${err.message}`) : String(err);
        this.fail({ family, input, kind, detail: detail.slice(0, 300) });
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** A failure found outside a probe (the line's checks). */
  fail(failure: FailedInput): void {
    const row = this.row(failure.family);
    const known = this.knownIssues.find((k) => k.family === failure.family && k.detail.test(failure.detail));
    if (known) row.known++;
    else row[failure.kind]++;
    this.failures.push(known ? { ...failure, known: known.why } : failure);
  }

  /** Failures not known to be owned elsewhere: each fails the run. */
  unexpected(): string[] {
    return this.failures.filter((f) => !f.known).map(describe);
  }

  /** The table a run prints. */
  table(title: string): string {
    const lines = [`${title} (seed ${this.seed}; repeat with FUZZ_SEED=${this.seed})`, '', '| inputs | tried | refused | accepted | crashes | hangs | runaway memory | known (owned elsewhere) |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'];
    const total: Row = { tried: 0, refused: 0, accepted: 0, crash: 0, hang: 0, memory: 0, known: 0 };
    for (const [family, row] of this.rows) {
      lines.push(`| ${family} | ${row.tried} | ${row.refused} | ${row.accepted} | ${row.crash} | ${row.hang} | ${row.memory} | ${row.known} |`);
      for (const key of Object.keys(total) as (keyof Row)[]) total[key] += row[key];
    }
    lines.push(`| **all** | ${total.tried} | ${total.refused} | ${total.accepted} | ${total.crash} | ${total.hang} | ${total.memory} | ${total.known} |`);
    if (this.line.length > 0) lines.push('', '| the line | |', '| --- | ---: |', ...this.line.map(([k, v]) => `| ${k} | ${v} |`));
    const known = this.failures.filter((f) => f.known);
    if (known.length > 0) lines.push('', 'Known failures, owned elsewhere:', ...dedupe(known.map((f) => `- ${f.family}: ${f.detail.slice(0, 160)} (${f.known})`)));
    const unexpected = this.unexpected();
    if (unexpected.length > 0) lines.push('', 'FAILURES:', ...unexpected.slice(0, 30).map((f) => `- ${f}`));
    return lines.join('\n');
  }

  private row(family: string): Row {
    let row = this.rows.get(family);
    if (!row) this.rows.set(family, (row = { tried: 0, refused: 0, accepted: 0, crash: 0, hang: 0, memory: 0, known: 0 }));
    return row;
  }
}

function describe(f: FailedInput): string {
  return `${f.family} ${f.kind}: ${f.detail} <- ${f.input.slice(0, 200)}`;
}

function dedupe(lines: string[]): string[] {
  const counts = new Map<string, number>();
  for (const line of lines) counts.set(line, (counts.get(line) ?? 0) + 1);
  return [...counts].map(([line, n]) => (n > 1 ? `${line} x${n}` : line));
}
