import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DaemonStatus } from './status.js';
import type { PipelineStage } from '../pipeline/index.js';

// From a fraction of a millisecond (a tiny model on a GPU) to seconds (a first TensorRT run, a busy Pi).
const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * Prometheus metrics of one daemon, in its own registry. Counts are read from the daemon's status
 * at scrape time (one source of truth with /status and MQTT stats); latencies are observed as
 * frames pass.
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly stage: Histogram<'stage'>;
  private readonly frameToOutbox: Histogram;
  /** Last value seen per counter and label set: the sources (a new capture source or publisher after a reload) start again at 0. */
  private readonly seen = new Map<string, number>();
  private readonly gauges: Record<string, Gauge<string>>;
  private readonly counter: Record<string, Counter<string>>;

  constructor(private readonly read: () => DaemonStatus) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    this.stage = new Histogram({ name: 'linewatch_stage_seconds', help: 'Time a frame spends in each pipeline stage', labelNames: ['stage'], buckets: latencyBuckets, registers: [r] });
    this.frameToOutbox = new Histogram({
      name: 'linewatch_frame_to_outbox_seconds',
      help: 'From frame capture to its anomaly event committed to the outbox',
      buckets: latencyBuckets,
      registers: [r],
    });
    const counter = (name: string, help: string, labelNames: string[] = []) => new Counter({ name, help, labelNames, registers: [r] });
    this.counter = {
      // `camera`: site/line/camera of the camera the frames came from.
      captured: counter('linewatch_frames_captured_total', 'Frames received from the camera or replay source', ['camera']),
      dropped: counter('linewatch_frames_dropped_total', 'Frames lost before a decision, by reason', ['reason', 'camera']),
      classified: counter('linewatch_frames_classified_total', 'Frames decided good or anomaly', ['camera']),
      decisions: counter('linewatch_decisions_total', 'Decisions by result', ['result', 'camera']),
      anomalies: counter('linewatch_anomalies_total', 'Anomaly decisions by label', ['label']),
      refused: counter('linewatch_events_refused_total', 'Anomaly events refused because the outbox was full'),
      delivered: counter('linewatch_events_delivered_total', 'Events acknowledged by the broker'),
      syncPublished: counter('linewatch_sync_published_total', 'Fleet sync: own references (kind reference) and tombstones (kind tombstone) acknowledged by the broker', ['kind']),
      syncImported: counter('linewatch_sync_imported_total', 'Fleet sync: peer references imported'),
      syncDeletions: counter('linewatch_sync_deletions_total', 'Fleet sync: peer tombstones applied'),
      syncRefused: counter('linewatch_sync_refused_total', 'Fleet sync: messages refused, by reason', ['reason']),
    };
    const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames, registers: [r] });
    this.gauges = {
      backlog: gauge('linewatch_outbox_backlog', 'Events stored in the outbox, waiting for the broker'),
      connected: gauge('linewatch_mqtt_connected', '1 while connected to the broker'),
      references: gauge('linewatch_references', 'Enrolled references by label', ['label']),
      referencesBySource: gauge('linewatch_references_by_source', 'Enrolled references by source (human, auto, ...)', ['source']),
      threshold: gauge('linewatch_threshold', 'Anomaly score threshold in force'),
      model: gauge('linewatch_model_info', 'The model bundle in use (value 1)', ['name', 'version', 'precision']),
      provider: gauge('linewatch_inference_provider_info', 'ONNX Runtime execution provider in use (value 1)', ['provider']),
      syncPending: gauge('linewatch_sync_pending', 'Fleet sync: own references and tombstones not yet acknowledged by the broker'),
    };
  }

  observeStage(stage: PipelineStage, seconds: number): void {
    this.stage.observe({ stage }, seconds);
  }

  observeFrameToOutbox(seconds: number): void {
    this.frameToOutbox.observe(seconds);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async render(): Promise<string> {
    this.update(this.read());
    return this.registry.metrics();
  }

  private update(s: DaemonStatus): void {
    const c = this.counter;
    for (const { key: camera, capture, decisions } of s.cameras) {
      this.sync(c['captured']!, { camera }, capture.framesReceived);
      this.sync(c['dropped']!, { reason: 'capture', camera }, capture.framesDropped);
      this.sync(c['dropped']!, { reason: 'queue_full', camera }, capture.droppedWhileBusy);
      this.sync(c['dropped']!, { reason: 'invalid', camera }, decisions.invalidFrames);
      this.sync(c['dropped']!, { reason: 'no_references', camera }, decisions.unclassified);
      this.sync(c['dropped']!, { reason: 'inference_failed', camera }, decisions.failed);
      this.sync(c['classified']!, { camera }, decisions.classified);
      this.sync(c['decisions']!, { result: 'good', camera }, decisions.good);
      this.sync(c['decisions']!, { result: 'anomaly', camera }, decisions.anomalies);
    }
    for (const [label, n] of Object.entries(s.decisions.anomaliesByLabel)) this.sync(c['anomalies']!, { label }, n);
    this.sync(c['refused']!, {}, s.events.refused);
    this.sync(c['delivered']!, {}, s.events.mqtt?.delivered ?? 0);

    const g = this.gauges;
    g['backlog']!.set(s.events.backlog);
    g['connected']!.set(s.events.mqtt?.connected ? 1 : 0);
    g['threshold']!.set(s.classifier.threshold);
    // Labels come and go (a label's references removed, a new model): rebuild these each scrape.
    g['references']!.reset();
    for (const [label, n] of Object.entries(s.references.byLabel)) g['references']!.set({ label }, n);
    g['referencesBySource']!.reset();
    for (const [source, n] of Object.entries(s.references.bySource)) g['referencesBySource']!.set({ source }, n);
    g['model']!.reset();
    g['model']!.set({ name: s.model.name, version: s.model.version, precision: s.model.precision }, 1);
    g['provider']!.reset();
    g['provider']!.set({ provider: s.model.provider }, 1);
    if (s.sync) {
      this.sync(c['syncPublished']!, { kind: 'reference' }, s.sync.published);
      this.sync(c['syncPublished']!, { kind: 'tombstone' }, s.sync.tombstonesPublished);
      this.sync(c['syncImported']!, {}, s.sync.imported);
      this.sync(c['syncDeletions']!, {}, s.sync.deletionsApplied);
      for (const [reason, n] of Object.entries(s.sync.refused)) this.sync(c['syncRefused']!, { reason }, n);
      g['syncPending']!.set(s.sync.pending);
    }
  }

  /** Advances a counter to follow a count kept elsewhere; a count that went down restarted from 0. */
  private sync(counter: Counter<string>, labels: Record<string, string>, value: number): void {
    const key = `${(counter as unknown as { name: string }).name}${JSON.stringify(labels)}`;
    const last = this.seen.get(key) ?? 0;
    const delta = value >= last ? value - last : value;
    if (delta > 0 || !this.seen.has(key)) counter.inc(labels, delta);
    this.seen.set(key, value);
  }
}
