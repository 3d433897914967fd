import { createFrameSource, FrameQueue, type CaptureStatus, type Frame, type FrameSource, type FrameSourceOptions } from '../capture/index.js';
import { errorText, setLogFormat, setLogLevel, type Logger } from '../common/index.js';
import type { Config } from '../config/index.js';
import { createAnomalyEvent, Outbox, OutboxFullError, Publisher, type AnomalyEvent, type PublisherStatus } from '../events/index.js';
import type { Decision } from '../knn/index.js';
import type { Db } from '../storage/index.js';
import { enroll, listLabeledImages, reembedReferences } from './enrollment.js';
import { checkHealth } from './health.js';
import { StatusServer } from './http.js';
import { DaemonMetrics } from './metrics.js';
import { classifierSettings, openModel, openReferences, openStateDatabase, type Model, type References } from './parts.js';
import { Pipeline, type PipelineCounters } from './pipeline.js';
import { planReload } from './reload.js';
import { prepareTensorRt } from './tensorrt.js';

export interface DaemonStatus {
  state: 'starting' | 'running' | 'stopping' | 'stopped';
  startedAt: string;
  site: string;
  line: string;
  camera: string;
  /** Problems a user should act on, in words; empty while all is well. */
  problems: string[];
  capture: CaptureStatus & { queued: number; droppedWhileBusy: number };
  model: { name: string; version: string; precision: string; provider: string };
  references: { total: number; searchable: number; byLabel: Record<string, number>; bySource: Record<string, number>; index: string };
  classifier: { k: number; threshold: number; unknownDistance: number; goodLabel: string };
  decisions: PipelineCounters;
  events: { backlog: number; refused: number; mqtt: PublisherStatus | null };
}

/**
 * Wires the parts: capture -> queue -> pipeline (preprocess, encoder, classifier) -> outbox -> MQTT.
 * The parts know nothing of each other; this class owns their lifecycle.
 */
export class Daemon {
  private state: DaemonStatus['state'] = 'starting';
  private readonly startedAt = new Date();
  private eventsRefused = 0;
  private refusing: string | null = null;
  private backlogCache = { value: 0, at: 0 };
  /** Anomalies decided in this turn of the event loop, committed together by commitEvents(). */
  private pendingEvents: { frame: Frame; decision: Decision; event: AnomalyEvent }[] = [];
  private running: Promise<void> | null = null;
  private http: StatusServer | null = null;
  /** The configuration the daemon started with: keys that cannot change live are compared with it. */
  private readonly startedWith: Config;
  /** Keys changed in the file that wait for a restart (reported in status). */
  private needRestart: string[] = [];
  /** Set while a reload replaces the frame source, so finished() does not take the old source's end for the end. */
  private swapping: Promise<void> | null = null;

  private constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly db: Db,
    private readonly model: Model,
    private readonly references: References,
    private readonly outbox: Outbox,
    private publisher: Publisher | null,
    private source: FrameSource,
    private readonly queue: FrameQueue,
    private readonly pipeline: Pipeline,
    private readonly metrics: DaemonMetrics,
  ) {
    this.startedWith = config;
  }

  /** Opens every part (refusing a bad model or config with the reason), then starts the flow of frames. */
  static async start(config: Config, log: Logger): Promise<Daemon> {
    const db = openStateDatabase(config);
    const cleanup: (() => unknown)[] = [() => db.close()];
    try {
      await prepareTensorRt(config, log.child('inference'));
      const model = await openModel(config, log);
      cleanup.push(() => model.encoder.close());
      const references = openReferences(db, config, model.bundle, log);
      await reembedReferences(model, references, log);
      if (references.store.count() === 0 && config.enroll.folder) {
        const result = await enroll(await listLabeledImages(config.enroll.folder), model, references, { log });
        log.info('enrolled the starting references', { folder: config.enroll.folder, added: result.added, byLabel: result.byLabel, skipped: result.skipped.length });
      }
      const outbox = new Outbox(db);
      let daemon: Daemon | null = null;
      const publisher = config.mqtt.enabled ? new Publisher(outbox, publisherOptions(config, log, () => daemon?.statsMessage() ?? {})) : null;
      const source = createFrameSource(sourceOptions(config));
      const queue = new FrameQueue(config.capture.queueSize);
      const metrics = new DaemonMetrics(() => daemon!.status());
      const pipeline = new Pipeline(
        queue,
        model,
        references,
        (frame, decision) => daemon!.record(frame, decision),
        log.child('pipeline'),
        // Enough frames in flight to fill a batch on every worker while the next ones decode.
        config.inference.maxBatch * config.inference.workers + 2,
        (stage, seconds) => metrics.observeStage(stage, seconds),
      );
      daemon = new Daemon(config, log, db, model, references, outbox, publisher, source, queue, pipeline, metrics);
      cleanup.length = 0;
      const started = daemon;
      try {
        if (config.http.enabled) {
          started.http = await StatusServer.listen(
            config.http.host,
            config.http.port,
            {
              '/status': () => ({ status: 200, type: 'application/json', body: JSON.stringify(started.status(), null, 2) }),
              '/healthz': () => {
                const health = checkHealth(started.status(), Date.now(), started.config.capture.stallTimeoutMs);
                return { status: health.ok ? 200 : 503, type: 'application/json', body: JSON.stringify(health, null, 2) };
              },
              '/metrics': async () => ({ status: 200, type: metrics.contentType, body: await metrics.render() }),
            },
            log.child('http'),
          );
        }
      } catch (err) {
        await started.stop({ flushTimeoutMs: 0 });
        throw err;
      }
      publisher?.start();
      daemon.running = pipeline.run();
      try {
        await daemon.startSource(source);
      } catch (err) {
        await daemon.stop({ flushTimeoutMs: 0 });
        throw err;
      }
      daemon.state = 'running';
      const ready = references.classifier.notReady();
      log.info('running', {
        source: source.name,
        ...(daemon.http ? { status: `${daemon.http.url}/status` } : {}),
        model: model.bundle.key,
        provider: model.encoder.provider,
        references: references.index.size,
        ...(ready ? { problem: ready.message } : {}),
      });
      return daemon;
    } catch (err) {
      for (const close of cleanup.reverse()) await close();
      throw err;
    }
  }

  /** Decisions arrive here in frame order; an anomaly and its outbox row commit together. */
  private record(frame: Frame, decision: Decision): void {
    if (!decision.anomaly) return;
    if (this.backlog() + this.pendingEvents.length >= this.config.mqtt.outboxLimit) {
      this.refuse(`the outbox holds ${this.config.mqtt.outboxLimit} events (mqtt.outboxLimit): new events are refused until the broker takes some`);
      return;
    }
    const { bundle } = this.model;
    const event = createAnomalyEvent({
      capturedAt: frame.capturedAt,
      site: this.config.site,
      line: this.config.line,
      camera: this.config.camera,
      score: decision.score,
      threshold: decision.threshold,
      label: decision.label,
      unknown: decision.unknown,
      neighbours: decision.neighbours,
      model: { name: bundle.manifest.name, version: bundle.manifest.version },
      frame: { seq: frame.seq, origin: frame.origin },
    });
    if (this.pendingEvents.length === 0) setImmediate(() => this.commitEvents());
    this.pendingEvents.push({ frame, decision, event });
  }

  /**
   * Writes the anomalies decided in this turn of the event loop (a batch's worth) in one
   * transaction: one fsync for the batch instead of one per event. Nothing is published before
   * its row is committed.
   */
  private commitEvents(): void {
    const pending = this.pendingEvents;
    if (pending.length === 0) return;
    this.pendingEvents = [];
    try {
      this.outbox.transaction(() => {
        for (const { event } of pending) this.outbox.append(event);
      });
    } catch (err) {
      const reason = err instanceof OutboxFullError ? `${err.message}; ${err.hint ?? ''}` : `cannot store events in the outbox: ${errorText(err)}`;
      for (let i = 0; i < pending.length; i++) this.refuse(reason);
      return;
    }
    this.backlogCache.value += pending.length;
    this.refusing = null;
    for (const { frame, decision, event } of pending) {
      this.metrics.observeFrameToOutbox((Date.now() - frame.capturedAt) / 1000);
      this.log.info('anomaly', { label: decision.label, score: round(decision.score), frame: frame.origin, seq: frame.seq, event: event.id });
    }
  }

  /** Refuse loudly: an error line (at most every 10 s), a counter and a status problem; never corrupt the store. */
  private refuse(reason: string): void {
    this.eventsRefused++;
    if (this.refusing !== reason || this.eventsRefused % 100 === 1) this.log.error('event refused', { reason, refused: this.eventsRefused });
    this.refusing = reason;
  }

  /** COUNT(*) on a large outbox is not free: read it at most once a second. */
  private backlog(): number {
    const now = Date.now();
    if (now - this.backlogCache.at > 1000) this.backlogCache = { value: this.outbox.backlog(), at: now };
    return this.backlogCache.value;
  }

  private startSource(source: FrameSource): Promise<void> {
    // Replay can wait for room (no frame of the sample line is lost); a live camera cannot.
    return source.start(source.kind === 'replay' ? (frame) => this.queue.pushWhenRoom(frame) : (frame) => this.queue.push(frame));
  }

  /**
   * Applies a new configuration (SIGHUP): classifier settings, topics and broker (a new MQTT
   * connection; the outbox keeps every event), frame source and log settings. Keys that need a
   * restart are reported, not applied. Returns what changed.
   */
  async reload(next: Config): Promise<{ changed: string[]; needRestart: string[] }> {
    if (this.state !== 'running') throw new Error(`cannot reload while ${this.state}`);
    const plan = planReload(this.startedWith, this.config, next);
    const previous = this.config;
    if (plan.classifier) this.references.classifier.configure(classifierSettings(next, this.model.bundle));
    this.config = next;
    if (plan.log) {
      setLogLevel(next.log.level);
      if (next.log.format !== 'auto') setLogFormat(next.log.format);
    }
    if (plan.publisher) {
      const old = this.publisher;
      this.publisher = next.mqtt.enabled ? new Publisher(this.outbox, publisherOptions(next, this.log, () => this.statsMessage())) : null;
      // Unacknowledged events stay in the outbox; the new connection starts from its head.
      await old?.stop({ flushTimeoutMs: 0 });
      this.publisher?.start();
    }
    if (plan.source) await this.replaceSource(next, previous);
    this.needRestart = plan.needRestart;
    return { changed: plan.changed, needRestart: plan.needRestart };
  }

  /** Swaps the frame source; when the new one cannot start, the old settings come back and the reason is thrown. */
  private async replaceSource(next: Config, previous: Config): Promise<void> {
    let done!: () => void;
    this.swapping = new Promise((resolve) => (done = resolve));
    let stopped = false;
    try {
      const source = createFrameSource(sourceOptions(next));
      await this.source.stop();
      stopped = true;
      await this.startSource(source);
      this.source = source;
    } catch (err) {
      this.config = { ...next, capture: previous.capture };
      if (stopped) {
        const restored = createFrameSource(sourceOptions(previous));
        await this.startSource(restored);
        this.source = restored;
      }
      throw err;
    } finally {
      this.swapping = null;
      done();
    }
  }

  status(): DaemonStatus {
    const capture = this.source.status();
    const index = this.references.index.stats();
    const problems: string[] = [];
    if (capture.lastError && capture.state !== 'running') problems.push(`capture: ${capture.lastError}`);
    if (this.pipeline.problem) problems.push(this.pipeline.problem);
    if (this.refusing) problems.push(this.refusing);
    if (this.needRestart.length > 0) problems.push(`configuration changed for ${this.needRestart.join(', ')}: restart linewatch to apply it`);
    const mqtt = this.publisher?.status() ?? null;
    if (mqtt?.lastError) problems.push(mqtt.lastError);
    const settings = this.references.classifier.settings;
    return {
      state: this.state,
      startedAt: this.startedAt.toISOString(),
      site: this.config.site,
      line: this.config.line,
      camera: this.config.camera,
      problems,
      capture: { ...capture, queued: this.queue.size, droppedWhileBusy: this.queue.dropped },
      model: {
        name: this.model.bundle.manifest.name,
        version: this.model.bundle.manifest.version,
        precision: this.model.bundle.manifest.precision,
        provider: this.model.encoder.provider,
      },
      references: {
        total: this.references.store.count(),
        searchable: index.count,
        byLabel: Object.fromEntries(this.references.store.countByLabel()),
        bySource: Object.fromEntries(this.references.store.countBySource()),
        index: index.mode,
      },
      classifier: { ...settings },
      decisions: { ...this.pipeline.counters, anomaliesByLabel: { ...this.pipeline.counters.anomaliesByLabel } },
      events: { backlog: mqtt?.backlog ?? this.outbox.backlog(), refused: this.eventsRefused, mqtt },
    };
  }

  /** The periodic MQTT stats message: counts, not one message per good frame. */
  statsMessage(): Record<string, unknown> {
    const s = this.status();
    return {
      frames: { captured: s.capture.framesReceived, dropped: s.capture.framesDropped + s.capture.droppedWhileBusy, invalid: s.decisions.invalidFrames },
      decisions: { classified: s.decisions.classified, good: s.decisions.good, anomalies: s.decisions.anomalies, byLabel: s.decisions.anomaliesByLabel },
      model: s.model,
      problems: s.problems,
    };
  }

  /** Frames the pipeline finished (decided, or held back for want of references): the watchdog's sign of progress. */
  get framesFinished(): number {
    return this.pipeline.counters.classified + this.pipeline.counters.unclassified;
  }

  /** Where status is served, e.g. http://127.0.0.1:8787 (null when http is off). */
  get statusUrl(): string | null {
    return this.http?.url ?? null;
  }

  /** Resolves when the source ended (a play-once replay) and every frame was decided. */
  async finished(): Promise<void> {
    for (;;) {
      const source = this.source;
      await source.ended();
      await this.swapping;
      if (source === this.source) break;
    }
    this.queue.close();
    await this.running;
  }

  /**
   * Stops capture, lets frames already taken finish, saves the index, flushes the outbox as far
   * as the broker allows within `flushTimeoutMs`, then closes everything. Unacknowledged events stay stored.
   */
  async stop(options: { flushTimeoutMs?: number } = {}): Promise<void> {
    await this.swapping;
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'stopping';
    this.log.info('stopping');
    await this.source.stop();
    this.queue.close();
    await this.http?.close();
    try {
      await this.running;
    } catch (err) {
      this.log.error('pipeline failed while stopping', { error: errorText(err) });
    }
    // The last decisions must be stored before the publisher's final flush.
    this.commitEvents();
    try {
      this.references.index.save();
    } catch (err) {
      this.log.warn('could not save the search index; it will be rebuilt at next start', { error: errorText(err) });
    }
    await this.publisher?.stop({ flushTimeoutMs: options.flushTimeoutMs ?? this.config.mqtt.flushTimeoutS * 1000 });
    const backlog = this.outbox.backlog();
    await this.model.encoder.close();
    this.db.close();
    this.state = 'stopped';
    this.log.info('stopped', { eventsWaiting: backlog });
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function publisherOptions(config: Config, log: Logger, stats: () => Record<string, unknown>): ConstructorParameters<typeof Publisher>[1] {
  const m = config.mqtt;
  const optional = <T>(value: T | null) => value ?? undefined;
  return {
    url: m.url,
    site: config.site,
    line: config.line,
    camera: config.camera,
    topicRoot: optional(m.topicRoot),
    clientId: optional(m.clientId),
    username: optional(m.username),
    password: optional(m.password),
    keepaliveSeconds: m.keepaliveS,
    caFile: optional(m.caFile),
    certFile: optional(m.certFile),
    keyFile: optional(m.keyFile),
    statsIntervalMs: m.statsIntervalS * 1000,
    stats,
    logger: log.child('mqtt'),
  };
}

export function sourceOptions(config: Config): FrameSourceOptions {
  const c = config.capture;
  const supervision = {
    stallTimeoutMs: c.stallTimeoutMs,
    restartInitialMs: c.restartInitialMs,
    restartMaxMs: c.restartMaxMs,
    maxFrameBytes: c.maxFrameBytes,
  };
  switch (c.source) {
    case 'replay':
      return { kind: 'replay', folder: c.replay.folder, fps: c.replay.fps, loop: c.replay.loop };
    case 'gstreamer': {
      const g = c.gstreamer;
      return {
        kind: 'gstreamer',
        ...supervision,
        preset: g.preset === 'custom' ? 'pipeline' : g.preset,
        device: g.device,
        sensorId: g.sensorId,
        width: g.width,
        height: g.height,
        fps: g.fps,
        ...(g.preset === 'custom' ? { pipeline: g.pipeline } : {}),
      };
    }
    case 'libcamera':
      return { kind: 'libcamera', ...supervision, width: c.libcamera.width, height: c.libcamera.height, fps: c.libcamera.fps, extraArgs: c.libcamera.extraArgs };
  }
}
