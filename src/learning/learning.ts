import { errorText, type Logger } from '../common/index.js';
import type { Config } from '../config/index.js';
import { isAutomatic, type DecisionNeighbour, type ReferenceChange, type ReferenceStore } from '../knn/index.js';
import { referenceThumbnail, type ModelRuntime } from '../models/index.js';
import { roiOf, type DecidedFrame } from '../pipeline/index.js';
import { HourCounts } from './hour-counts.js';
import { labelRadius } from './radius.js';

export type LearningSettings = Config['learning'];

/** Why a decided frame did not become a reference. */
export type RefusalReason =
  | 'unknown'
  | 'disagree'
  | 'no_human_neighbour'
  | 'few_human_references'
  | 'outside_radius'
  | 'no_margin'
  | 'duplicate'
  | 'hourly_cap'
  | 'total_cap'
  | 'share_cap'
  | 'model_changed'
  | 'busy'
  | 'bad_image';

export interface LearningStatus {
  enabled: boolean;
  /** What the last hour saw: admitted, refused by reason, expired, removed by a person's contradicting label. */
  lastHour: { admitted: number; refused: Partial<Record<RefusalReason, number>>; expired: number; conflicts: number };
  /** Since start. */
  total: { admitted: number; refused: Partial<Record<RefusalReason, number>>; expired: number; conflicts: number };
  /** Frames waiting for the full check (at most `queueLimit`). */
  queued: number;
}

/** Where the model in force is read (the ModelManager). */
export interface ActiveModel {
  readonly active: ModelRuntime;
}

/** Candidates waiting for the full check; more are refused as `busy` (admission is rare, so this only bounds a burst). */
const queueLimit = 16;
/** Expiry runs this often. */
const maintainIntervalMs = 60_000;

/**
 * Self-training, guarded (docs/learning.md). A decision consumer that admits a decided frame as an
 * `auto` reference only when it is unmistakable: its `learning.neighbours` nearest references agree, at least one of them is a
 * human reference, the nearest is well inside the label's radius (from its human references), the
 * nearest other label is far beyond it, it is no near-duplicate, and the label's caps have room.
 * Admitted references enter the live index at once and are stored with their image, so a model
 * swap re-embeds them like the rest. Unconfirmed ones expire. A person's label that contradicts
 * automatic references near it removes them, whether learning is on or not.
 */
export class Learning {
  private queue: DecidedFrame[] = [];
  private working: Promise<void> | null = null;
  private readonly counts = new HourCounts();
  private readonly total = { admitted: 0, refused: {} as Partial<Record<RefusalReason, number>>, expired: 0, conflicts: 0 };
  private radii = new Map<string, number | null>();
  private unsubscribe: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: ReferenceStore,
    private readonly models: ActiveModel,
    private settings: LearningSettings,
    private readonly log: Logger,
    /** The clock (the drift experiment runs simulated hours). */
    private readonly now: () => number = Date.now,
  ) {}

  /** Listens for people's labels (conflicts) and expires old unconfirmed references every minute. */
  start(): void {
    this.unsubscribe = this.store.onChange((changes) => this.onChanges(changes));
    this.maintain();
    this.timer = setInterval(() => this.maintain(), maintainIntervalMs);
    this.timer.unref();
  }

  /** Stops listening and waits for the admission under way. */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.queue = [];
    await this.idle();
  }

  /** New thresholds after a reload. */
  configure(settings: LearningSettings): void {
    this.settings = settings;
    this.radii.clear();
  }

  status(): LearningStatus {
    const hour = this.counts.lastHour(this.now());
    const refused: Partial<Record<RefusalReason, number>> = {};
    for (const [key, n] of Object.entries(hour)) if (key.startsWith('refused:')) refused[key.slice(8) as RefusalReason] = n;
    return {
      enabled: this.settings.enabled,
      lastHour: { admitted: hour['admitted'] ?? 0, refused, expired: hour['expired'] ?? 0, conflicts: hour['conflicts'] ?? 0 },
      total: { ...this.total, refused: { ...this.total.refused } },
      queued: this.queue.length,
    };
  }

  /** Resolves when every queued candidate has been checked (and admitted or refused). */
  async idle(): Promise<void> {
    while (this.working) await this.working;
  }

  /** The DecisionConsumer: the cheap checks here, in frame order; the rest (against the references as they are then) one at a time after. */
  readonly consume = (decided: DecidedFrame): void => {
    if (!this.settings.enabled) return;
    let refusal: RefusalReason | null = null;
    if (decided.decision.unknown) refusal = 'unknown';
    else if (decided.model !== this.models.active) refusal = 'model_changed';
    else if (this.queue.length >= queueLimit) refusal = 'busy';
    if (refusal) return this.refuse(refusal);
    this.queue.push(decided);
    this.working ??= this.work().finally(() => (this.working = null));
  };

  /** Removes automatic references not confirmed within learning.expireAfterH; returns how many. */
  maintain(): number {
    const before = this.now() - this.settings.expireAfterH * 3_600_000;
    const ids = this.store.idsWhere({ source: 'auto', unconfirmed: true, createdBefore: before });
    if (ids.length === 0) return 0;
    const removed = this.remove(ids);
    this.total.expired += removed;
    this.counts.add('expired', this.now(), removed);
    this.log.info('automatic references expired (never confirmed)', { removed, expireAfterH: this.settings.expireAfterH });
    return removed;
  }

  private async work(): Promise<void> {
    for (let next = this.queue.shift(); next; next = this.queue.shift()) {
      try {
        const refusal = await this.admit(next);
        if (refusal) this.refuse(refusal);
      } catch (err) {
        this.log.warn('could not admit a reference', { frame: next.frame.origin, seq: next.frame.seq, error: errorText(err) });
      }
    }
  }

  /** The full check against the references as they are now, then the admission; returns why not, or null when admitted. */
  private async admit(decided: DecidedFrame): Promise<RefusalReason | null> {
    const { decision, model, vector, frame } = decided;
    if (model !== this.models.active) return 'model_changed';
    const s = this.settings;
    // Deeper than the neighbours that must agree, to find the nearest reference of another label; beyond this depth it is farther still.
    const found = model.index.search(vector, Math.max(4 * s.neighbours, 32));
    const labels = this.store.labelsOf(found.map((f) => f.referenceId));
    const near = found.filter((f) => labels.has(f.referenceId)).map((f): DecisionNeighbour => ({ ...f, label: labels.get(f.referenceId)! }));
    const agreeing = near.slice(0, s.neighbours);
    const nearest = agreeing[0];
    if (!nearest || agreeing.length < s.neighbours || agreeing.some((x) => x.label !== nearest.label)) return 'disagree';
    const label = nearest.label;
    const sources = this.store.sourcesOf(agreeing.map((x) => x.referenceId));
    if (![...sources.values()].includes('human')) return 'no_human_neighbour';
    const radius = this.radiusOf(model, label);
    if (radius === null) return 'few_human_references';
    if (nearest.distance > s.radiusShare * radius) return 'outside_radius';
    if (nearest.distance < s.duplicateShare * radius) return 'duplicate';
    const other = near.find((x) => x.label !== label);
    if (other && other.distance < s.marginRatio * nearest.distance) return 'no_margin';
    const now = this.now();
    const auto = this.store.countWhere({ label, source: 'auto' });
    if (auto >= s.perLabelTotal) return 'total_cap';
    if (this.store.countWhere({ label, source: 'auto', createdAfter: now - 3_600_000 }) >= s.perLabelPerHour) return 'hourly_cap';
    // The share counts the peers' automatic references too: together they must not outweigh the people's.
    if ((this.store.countWhere({ label, automatic: true }) + 1) / (this.store.countWhere({ label }) + 1) > s.maxAutoShare) return 'share_cap';
    let image: Buffer;
    try {
      image = await referenceThumbnail(frame.data, model, roiOf(frame, model));
    } catch {
      return 'bad_image';
    }
    if (model !== this.models.active) return 'model_changed';
    const confidence = round(1 - nearest.distance / radius);
    const admittedBy = {
      frame: { seq: frame.seq, origin: frame.origin, capturedAt: frame.capturedAt },
      score: round(decision.score),
      nearest: round(nearest.distance),
      radius: round(radius),
      nearestOtherLabel: other ? round(other.distance) : null,
      neighbours: agreeing.map((x) => ({ id: x.referenceId, source: sources.get(x.referenceId), distance: round(x.distance) })),
    };
    const id = this.store.add(
      { label, source: 'auto', origin: `frame:${frame.origin}#${frame.seq}`, confidence, thumbnail: image, createdAt: now, decision: JSON.stringify(admittedBy) },
      model.key,
      vector,
    );
    model.index.add(id, vector);
    // The automatic references this admission leaned on were right about a new item: they stay.
    this.store.confirm(agreeing.filter((x) => sources.get(x.referenceId) === 'auto').map((x) => x.referenceId), now);
    this.total.admitted++;
    this.counts.add('admitted', now);
    this.log.debug('reference admitted', { id, label, confidence, frame: frame.origin, seq: frame.seq });
    return null;
  }

  /** The label's radius for the model (cached until the label's human references change); null when it has too few. */
  private radiusOf(model: ModelRuntime, label: string): number | null {
    const key = `${model.key}\u0000${label}`;
    if (!this.radii.has(key)) {
      const ids = this.store.idsWhere({ label, source: 'human' });
      const radius = ids.length < this.settings.minHumanReferences ? null : labelRadius(this.store.loadVectors(model.key, model.index.dimension, ids), model.index.dimension, this.settings.radiusPercentile);
      this.radii.set(key, radius);
    }
    return this.radii.get(key)!;
  }

  /**
   * A person's label (a human reference, or a peer's reference a person labeled) contradicts the
   * automatic references of another label among its `learning.neighbours` nearest: they go, this
   * device's own (the sync publishes their tombstones) and the copies of peers' (their devices
   * remove the originals when the label reaches them). Those of its own label are confirmed.
   */
  private onChanges(changes: readonly ReferenceChange[]): void {
    if (changes.some((c) => c.source === 'human')) this.radii.clear();
    for (const change of changes) {
      if (change.change !== 'added' || change.source === 'auto') continue;
      try {
        this.settle(change);
      } catch (err) {
        this.log.warn('could not check a new label against automatic references', { reference: change.referenceId, error: errorText(err) });
      }
    }
  }

  private settle(change: ReferenceChange): void {
    // A peer's reference speaks for a person only when a person labeled it (not the peer's own self-training).
    if (change.source === 'peer' && this.store.get(change.referenceId)?.labeledBy == null) return;
    const model = this.models.active;
    const packed = this.store.loadVectors(model.key, model.index.dimension, [change.referenceId]);
    if (packed.ids.length === 0) return;
    const found = model.index.search(packed.data, this.settings.neighbours + 1).filter((f) => f.referenceId !== change.referenceId);
    const labels = this.store.labelsOf(found.map((f) => f.referenceId));
    const auto = found.filter((f) => {
      const reference = this.store.get(f.referenceId);
      return reference !== undefined && isAutomatic(reference);
    });
    const contradicted = auto.filter((f) => labels.get(f.referenceId) !== change.label).map((f) => f.referenceId);
    this.store.confirm(auto.filter((f) => labels.get(f.referenceId) === change.label).map((f) => f.referenceId), this.now());
    if (contradicted.length === 0) return;
    const removed = this.remove(contradicted);
    this.total.conflicts += removed;
    this.counts.add('conflicts', this.now(), removed);
    this.log.warn('automatic references removed: a person labeled an item near them otherwise', {
      reference: change.referenceId,
      label: change.label,
      removed: contradicted.map((id) => ({ id, label: labels.get(id) })),
    });
  }

  private remove(ids: number[]): number {
    const removed = this.store.removeMany(ids);
    for (const id of ids) this.models.active.index.remove(id);
    return removed;
  }

  private refuse(reason: RefusalReason): void {
    this.counts.add(`refused:${reason}`, this.now());
    this.total.refused[reason] = (this.total.refused[reason] ?? 0) + 1;
  }
}

function round(x: number): number {
  return Math.round(x * 10_000) / 10_000;
}
