import { errorText, type Logger } from '../common/index.js';
import { roiOf, type DecidedFrame } from '../pipeline/index.js';
import { anomalyImage, keepAsIs, type KeptImage } from './crop.js';
import { createAnomalyEvent, type AnomalyEvent } from './event.js';
import type { AnomalyImages } from './images.js';
import { OutboxFullError, type Outbox } from './outbox.js';

export interface RecorderSettings {
  /** The topic levels of a frame that carries no camera of its own. */
  site: string;
  line: string;
  camera: string;
  /** Events kept for the broker at most; past it new ones are refused, old ones never dropped. */
  outboxLimit: number;
  /** The outbox streams each event is written to: one per way out (`events` for JSON topics, `sparkplug`). */
  streams: readonly string[];
  imageLongestSide: number;
}

export interface RecorderStatus {
  /** Anomaly events refused (outbox full, disk full) since start. */
  refused: number;
  /** Why events are being refused right now; null while all is well. */
  refusing: string | null;
  /** `waiting`: images still to be cropped; `skipped`: not kept because `maxImagesWaiting` were waiting (their events are kept). */
  images: { count: number; bytes: number; oldest: string | null; failed: number; waiting: number; skipped: number };
}

interface Pending {
  decided: DecidedFrame;
  event: AnomalyEvent;
}

/** Retention runs at most this often (it is a few DELETEs, but not for every frame). */
const pruneIntervalMs = 60_000;

/**
 * Anomaly images waiting to be cropped (through sharp) at most. When anomalies come faster than
 * the crops, the images past it are not kept (their events are): without a bound the waiting
 * frames grew the daemon by hundreds of MB a minute at full rate.
 */
export const maxImagesWaiting = 256;

/** Crops started together: each waits for a turn of a busy event loop, so one at a time kept about one image per turn. */
const cropsAtOnce = 16;

/**
 * The decision consumer that turns anomalies into durable events: each anomaly becomes an event
 * in the outbox (one transaction per turn of the event loop, a batch's worth), then its item's
 * image and vector are kept for people to see and label. A full outbox or disk refuses new
 * events loudly and never touches stored ones.
 */
export class EventRecorder {
  private pending: Pending[] = [];
  private refused = 0;
  private refusing: string | null = null;
  /** True once the reason for the refusal has gone (the backlog drained), so status stops reporting it before the next event proves it. */
  private refusalOver: () => boolean = () => false;
  private imageFailures = 0;
  private imagesSkipped = 0;
  /** Anomalies whose image is still to be cropped, oldest first; at most maxImagesWaiting. */
  private waitingCrops: Pending[] = [];
  /** The loop cropping them, while it runs. */
  private cropping: Promise<void> | null = null;
  private backlogCache = { value: 0, at: 0, deleted: 0 };
  private lastPrune = 0;

  constructor(
    private readonly outbox: Outbox,
    private readonly images: AnomalyImages,
    private settings: RecorderSettings,
    private readonly log: Logger,
    /** Told how long from capture to the committed event (the metrics' histogram). */
    private readonly observe: (seconds: number) => void = () => {},
  ) {}

  /** New names or limits after a reload. */
  configure(settings: RecorderSettings): void {
    this.settings = settings;
  }

  /** The DecisionConsumer: called in frame order for every decision. */
  readonly consume = (decided: DecidedFrame): void => {
    if (!decided.decision.anomaly) return;
    const { outboxLimit, streams } = this.settings;
    if (this.backlog() + (this.pending.length + 1) * streams.length > outboxLimit) {
      this.refuse(`the outbox holds ${outboxLimit} events (mqtt.outboxLimit): new events are refused until the broker takes some`, () => this.backlog() + streams.length <= outboxLimit);
      return;
    }
    const { frame, decision, model } = decided;
    const m = model.bundle.manifest;
    const levels = frame.camera ?? this.settings;
    const event = createAnomalyEvent({
      capturedAt: frame.capturedAt,
      site: levels.site,
      line: levels.line,
      camera: levels.camera,
      score: decision.score,
      threshold: decision.threshold,
      label: decision.label,
      unknown: decision.unknown,
      neighbours: decision.neighbours,
      model: { name: m.name, version: m.version },
      frame: { seq: frame.seq, origin: frame.origin },
    });
    if (this.pending.length === 0) setImmediate(() => this.commit());
    this.pending.push({ decided, event });
  };

  status(): RecorderStatus {
    const s = this.images.stats();
    if (this.refusing !== null && this.refusalOver()) this.refusing = null;
    return {
      refused: this.refused,
      refusing: this.refusing,
      images: { count: s.count, bytes: s.bytes, oldest: s.oldest === null ? null : new Date(s.oldest).toISOString(), failed: this.imageFailures, waiting: this.waitingCrops.length, skipped: this.imagesSkipped },
    };
  }

  /** Commits what is decided but not yet stored, and waits for the images being written (on stop). */
  async flush(): Promise<void> {
    this.commit();
    while (this.cropping) await this.cropping;
  }

  /**
   * Writes the anomalies decided in this turn of the event loop in one transaction: one fsync for
   * the batch instead of one per event. Nothing is published before its row is committed. Images
   * kept as they came go in the same transaction; those to crop follow in a later one.
   */
  private commit(): void {
    const pending = this.pending;
    if (pending.length === 0) return;
    this.pending = [];
    const { imageLongestSide } = this.settings;
    const ready: ImageRow[] = [];
    const toCrop: Pending[] = [];
    for (const item of pending) {
      const kept = keepAsIs(item.decided.frame.data, roiOf(item.decided.frame, item.decided.model), imageLongestSide);
      if (kept) ready.push(imageRow(item, kept));
      else toCrop.push(item);
    }
    try {
      this.outbox.transaction(() => {
        for (const { event } of pending) for (const stream of this.settings.streams) this.outbox.append(event, stream);
        for (const row of ready) this.images.add(row);
      });
    } catch (err) {
      const full = err instanceof OutboxFullError;
      const reason = full ? `${err.message}; ${err.hint ?? ''}` : `cannot store events in the outbox: ${errorText(err)}`;
      // Delivered rows leave room that new events reuse (the disk reserve sees to it): a shrinking backlog ends a full disk's refusal.
      const backlog = this.backlog();
      for (let i = 0; i < pending.length; i++) this.refuse(reason, full ? () => this.backlog() < backlog : () => false);
      return;
    }
    this.backlogCache.value += pending.length * this.settings.streams.length;
    this.refusing = null;
    for (const { decided, event } of pending) {
      this.observe((Date.now() - decided.frame.capturedAt) / 1000);
      this.log.info('anomaly', { label: event.label, score: round(event.score), frame: event.frame.origin, seq: event.frame.seq, event: event.id, model: decided.model.key });
    }
    // The events are safe; the images to crop follow (a crash in between loses only those pictures).
    this.queueCrops(toCrop);
    this.pruneSometimes();
  }

  private queueCrops(items: Pending[]): void {
    const room = maxImagesWaiting - this.waitingCrops.length;
    if (items.length > room) {
      const before = this.imagesSkipped;
      this.imagesSkipped += items.length - room;
      // The first time, then once per thousand.
      if (before === 0 || Math.floor(before / 1000) !== Math.floor(this.imagesSkipped / 1000)) {
        this.log.warn('anomaly images not kept: the crops fall behind the anomalies (the events are kept)', { waiting: this.waitingCrops.length, skipped: this.imagesSkipped });
      }
    }
    this.waitingCrops.push(...items.slice(0, Math.max(0, room)));
    if (!this.cropping && this.waitingCrops.length > 0) {
      this.cropping = this.cropAll().finally(() => (this.cropping = null));
    }
  }

  private async cropAll(): Promise<void> {
    while (this.waitingCrops.length > 0) await this.keepImages(this.waitingCrops.splice(0, cropsAtOnce));
  }

  private async keepImages(pending: Pending[]): Promise<void> {
    const { imageLongestSide } = this.settings;
    const crops = await Promise.allSettled(pending.map(({ decided }) => anomalyImage(decided.frame.data, roiOf(decided.frame, decided.model), imageLongestSide, decided.model.frames.limits)));
    const rows: ImageRow[] = [];
    crops.forEach((crop, i) => {
      if (crop.status === 'fulfilled') {
        rows.push(imageRow(pending[i]!, crop.value));
      } else {
        this.imageFailures++;
        this.log.warn('anomaly image not kept', { event: pending[i]!.event.id, error: errorText(crop.reason) });
      }
    });
    if (rows.length > 0) {
      try {
        this.outbox.transaction(() => {
          for (const row of rows) this.images.add(row);
        });
      } catch (err) {
        this.imageFailures += rows.length;
        this.log.warn('anomaly images not kept (the events are)', { events: rows.length, error: errorText(err) });
      }
    }
  }

  private pruneSometimes(): void {
    if (Date.now() - this.lastPrune > pruneIntervalMs) {
      this.lastPrune = Date.now();
      try {
        const pruned = this.images.prune();
        if (pruned.removed > 0) this.log.info('old anomaly images removed (retention)', { removed: pruned.removed, bytes: pruned.bytes });
      } catch (err) {
        // A full disk must not stop the events: retention tries again next time.
        this.log.warn('old anomaly images not removed', { error: errorText(err) });
      }
    }
  }

  /**
   * Refuse loudly: an error line (on a new reason, and every 100th), a counter and a status
   * problem, which lasts until an event is stored or `over()` says the reason has gone.
   */
  private refuse(reason: string, over: () => boolean): void {
    this.refused++;
    if (this.refusing !== reason || this.refused % 100 === 1) this.log.error('event refused', { reason, refused: this.refused });
    this.refusing = reason;
    this.refusalOver = over;
  }

  /** COUNT(*) on a large outbox is not free: read it at most once a second, and count what was stored and delivered since. */
  private backlog(): number {
    const now = Date.now();
    if (now - this.backlogCache.at > 1000) this.backlogCache = { value: this.outbox.backlog(), at: now, deleted: this.outbox.deleted };
    // Rows delivered since the count: without them a small outboxLimit refused events while the broker took every one.
    return this.backlogCache.value - (this.outbox.deleted - this.backlogCache.deleted);
  }
}

type ImageRow = Parameters<AnomalyImages['add']>[0];

function imageRow({ decided, event }: Pending, kept: KeptImage): ImageRow {
  return {
    eventId: event.id,
    createdAt: Date.parse(event.decidedAt),
    contentType: kept.contentType,
    image: kept.image,
    modelKey: decided.model.key,
    vector: decided.vector,
    label: event.label,
    score: event.score,
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
