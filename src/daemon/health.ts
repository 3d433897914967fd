import type { DaemonStatus } from './status.js';

export interface Health {
  /** True only while frames are captured and decided, the model is loaded and anomaly events are stored. */
  ok: boolean;
  /** Why it is not ok, in words; empty when ok. */
  failing: string[];
  /** Other problems worth a look (broker down, ...) that do not stop frames being decided. */
  warnings: string[];
  lastFrameAt: string | null;
  lastDecisionAt: string | null;
  model: string;
  provider: string;
}

/**
 * Health as a load balancer or a plant monitor wants it: frames flow (a frame captured by every
 * camera and a frame decided within `staleMs`, counted from start until the first one), the model is loaded,
 * and anomaly events are not being refused (a line whose anomalies go unrecorded is not healthy).
 */
export function checkHealth(status: DaemonStatus, now: number, staleMs: number): Health {
  const failing: string[] = [];
  const since = Date.parse(status.startedAt);
  const age = (at: number | null) => now - (at ?? since);
  if (status.state !== 'running') failing.push(`the daemon is ${status.state}`);
  const pipelineProblem = status.decisions.problem;
  // Every camera must deliver: a line with one camera dark is not healthy.
  const stale = status.cameras.filter(({ capture }) => age(capture.lastFrameAt) > staleMs);
  for (const { key, capture } of stale) {
    const which = status.cameras.length > 1 ? ` by camera ${key}` : '';
    failing.push(`no frame captured${which} for ${Math.round(age(capture.lastFrameAt) / 1000)} s (capture ${capture.state}${capture.lastError ? `: ${capture.lastError}` : ''})`);
  }
  if (stale.length === 0 && age(status.decisions.lastDecisionAt) > staleMs) {
    failing.push(`no frame decided for ${Math.round(age(status.decisions.lastDecisionAt) / 1000)} s${pipelineProblem ? `: ${pipelineProblem}` : ''}`);
  }
  if (status.events.refusing) failing.push(`anomaly events are refused: ${status.events.refusing}`);
  const iso = (at: number | null) => (at === null ? null : new Date(at).toISOString());
  return {
    ok: failing.length === 0,
    failing,
    warnings: status.problems.filter((p) => !failing.some((f) => f.includes(p))),
    lastFrameAt: iso(status.capture.lastFrameAt),
    lastDecisionAt: iso(status.decisions.lastDecisionAt),
    model: `${status.model.name}@${status.model.version}`,
    provider: status.model.provider,
  };
}
