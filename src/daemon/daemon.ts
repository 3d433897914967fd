import { join } from 'node:path';
import { errorText, RequestError, UserError, setLogFormat, setLogLevel, type Logger } from '../common/index.js';
import { configuredCameras, type Config } from '../config/index.js';
import { ControlApi, ControlServer, controlCommands, ensureToken } from '../control/index.js';
import { AnomalyImages, EVENTS_TOPIC, EventRecorder, Outbox, SPARKPLUG_STREAM, type RecorderSettings } from '../events/index.js';
import { OverrideStore, ReferenceStore } from '../knn/index.js';
import { Learning } from '../learning/index.js';
import { ModelInbox, ModelManager } from '../models/index.js';
import { Pipeline, type DecisionConsumer } from '../pipeline/index.js';
import { defaultClientId } from '../mqtt/index.js';
import { DiskReserve, openDatabase, type Db } from '../storage/index.js';
import { FleetSync, type FleetSettings } from '../sync/index.js';
import { Accounts, WebUi } from '../ui/index.js';
import { Cameras } from './cameras.js';
import { checkHealth } from './health.js';
import { deviceNames, Messaging } from './messaging.js';
import { DaemonMetrics } from './metrics.js';
import { planReload } from './reload.js';
import { httpRoutes } from './routes.js';
import type { DaemonStatus } from './status.js';

export function databasePath(config: Config): string {
  return join(config.stateDir, 'linewatch.db');
}

export function tokenPath(config: Config): string {
  return config.control.tokenFile ?? join(config.stateDir, 'control-token');
}

export interface DaemonOptions {
  /** Reads the configuration file again (SIGHUP and the `reload` command); it throws a ConfigError naming what is wrong. */
  reloadConfig?: () => Config;
  /** Aborted by SIGTERM: start() gives up at its current step (a model still loading is closed once loaded) and rejects. */
  signal?: AbortSignal;
}

/**
 * The composition root: it opens the modules, wires them (camera -> pipeline -> decision
 * consumers; the control API over HTTP and MQTT), and stops them in order. Each module owns its
 * job and its status; this class only composes them.
 */
export class Daemon {
  private state: DaemonStatus['state'] = 'starting';
  private readonly startedAt = new Date();
  private http: ControlServer | null = null;
  private ui: WebUi | null = null;
  private messaging: Messaging | null = null;
  private sync: FleetSync | null = null;
  private inbox: ModelInbox | null = null;
  private running: Promise<void> | null = null;
  /** The configuration the daemon started with: keys that cannot change live are compared with it. */
  private readonly startedWith: Config;
  /** Keys changed in the file that wait for a restart (reported in status). */
  private needRestart: string[] = [];
  private reloading: Promise<unknown> = Promise.resolve();
  readonly api: ControlApi;

  private constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly db: Db,
    private readonly store: ReferenceStore,
    private readonly overrides: OverrideStore,
    readonly models: ModelManager,
    private readonly outbox: Outbox,
    private readonly images: AnomalyImages,
    private readonly recorder: EventRecorder,
    private readonly learning: Learning,
    private readonly cameras: Cameras,
    private readonly pipeline: Pipeline,
    private readonly metrics: DaemonMetrics,
    private readonly options: DaemonOptions,
  ) {
    this.startedWith = config;
    this.api = new ControlApi(
      controlCommands({
        status: () => this.status(),
        models,
        store,
        overrides,
        images,
        applyOverrides: () => models.reconfigure(this.config),
        reload: () => this.reloadFromFile(),
      }),
      log.child('control'),
    );
  }

  /** Opens every module (refusing a bad model or config with the reason), then starts the flow of frames. */
  static async start(config: Config, log: Logger, options: DaemonOptions = {}): Promise<Daemon> {
    const { signal } = options;
    const db = openDatabase(databasePath(config));
    let models: ModelManager | null = null;
    try {
      const store = new ReferenceStore(db, deviceName(config));
      const overrides = new OverrideStore(db);
      models = await unlessAborted(ModelManager.open(db, store, overrides, config, log), signal, (late) => late.close());
      const outbox = new Outbox(db, diskReserve(db, config, log));
      const images = new AnomalyImages(db, config.images);
      const cameras = new Cameras(configuredCameras(config), models.active.bundle.manifest.input);
      let daemon: Daemon | null = null;
      const metrics = new DaemonMetrics(() => daemon!.status());
      const recorder = new EventRecorder(outbox, images, recorderSettings(config), log.child('events'), (s) => metrics.observeFrameToOutbox(s));
      // Enough frames in flight to fill a batch on every worker while the next ones decode.
      const inFlight = config.inference.maxBatch * config.inference.workers + 2;
      const pipeline = new Pipeline(cameras.feed, models, log.child('pipeline'), inFlight, (stage, seconds) => metrics.observeStage(stage, seconds));
      pipeline.addConsumer(recorder.consume);
      const learning = new Learning(store, models, config.learning, log.child('learning'));
      pipeline.addConsumer(learning.consume);
      daemon = new Daemon(config, log, db, store, overrides, models, outbox, images, recorder, learning, cameras, pipeline, metrics, options);
      await daemon.run(signal);
      return daemon;
    } catch (err) {
      await models?.close();
      db.close();
      throw err;
    }
  }

  private async run(signal: AbortSignal | undefined): Promise<void> {
    const { config, log } = this;
    try {
      signal?.throwIfAborted();
      if (config.http.enabled) {
        // A camera is stale after its own stall timeout; health waits for the most patient one.
        const health = () => checkHealth(this.status(), Date.now(), Math.max(...configuredCameras(this.config).map((c) => c.capture.stallTimeoutMs)));
        if (config.ui.enabled) {
          const parts = { api: this.api, store: this.store, models: this.models, images: this.images, config: () => this.config, status: () => this.status(), health, needRestart: () => this.needRestart };
          this.ui = new WebUi(parts, new Accounts(this.db));
          this.onDecision(this.ui.live.consume);
        }
        this.http = await ControlServer.listen({
          host: config.http.host,
          port: config.http.port,
          token: ensureToken(tokenPath(config)),
          maxBodyBytes: config.control.maxPayloadBytes,
          routes: [...httpRoutes({ api: this.api, images: this.images, metrics: this.metrics, health, ...(this.ui ? { sessionUser: this.ui.sessionUser } : {}) }), ...(this.ui?.routes ?? [])],
          ...(this.ui ? { authorize: this.ui.authorize } : {}),
          log: log.child('http'),
        });
      }
      this.startMessaging(config);
      if (config.models.watchInbox) {
        this.inbox = new ModelInbox(join(config.stateDir, 'inbox'), this.models, log.child('models'));
        this.inbox.start();
      }
      signal?.throwIfAborted();
      this.learning.start();
      this.running = this.pipeline.run();
      // stop() below stops a camera that is still starting.
      await unlessAborted(this.cameras.start(), signal);
    } catch (err) {
      await this.stop({ flushTimeoutMs: 0 });
      throw err;
    }
    this.state = 'running';
    const ready = this.models.active.classifier.notReady();
    log.info('running', {
      source: this.cameras.names.join(', '),
      ...(this.http ? { status: `${this.http.url}/status` } : {}),
      model: this.models.active.key,
      provider: this.models.active.encoder.provider,
      references: this.models.active.index.size,
      ...(ready ? { problem: ready.message } : {}),
    });
  }

  private startMessaging(config: Config): void {
    const sparkplug = { db: this.db, line: () => this.status(), onDecision: (consumer: DecisionConsumer) => this.onDecision(consumer) };
    this.messaging = config.mqtt.enabled ? new Messaging(config, this.outbox, this.api, () => this.statsMessage(), this.log, sparkplug) : null;
    this.sync?.close();
    this.sync = null;
    if (this.messaging && config.sync.enabled) {
      this.sync = new FleetSync(this.db, this.store, this.models, fleetSettings(config), this.log.child('sync'));
      this.sync.attach(this.messaging.session);
    }
    this.messaging?.start();
  }

  private reloadFromFile(): Promise<unknown> {
    const read = this.options.reloadConfig;
    if (!read) return Promise.reject(new RequestError('no_config_file', 'this daemon was not started from a configuration file', 'run it with linewatch run --config FILE'));
    return this.reload(read());
  }

  /**
   * Applies a new configuration (SIGHUP, the `reload` command): classifier settings, names and
   * broker (a new MQTT connection; the outbox keeps every event), frame source and log settings.
   * Keys that need a restart are reported, not applied. Returns what changed.
   */
  reload(next: Config): Promise<{ changed: string[]; needRestart: string[] }> {
    const done = this.reloading.then(() => this.apply(next));
    this.reloading = done.catch(() => undefined);
    return done;
  }

  private async apply(next: Config): Promise<{ changed: string[]; needRestart: string[] }> {
    if (this.state !== 'running') throw new RequestError('not_running', `cannot reload while ${this.state}`, undefined, 503);
    const plan = planReload(this.startedWith, this.config, next);
    const previous = this.config;
    this.config = next;
    if (plan.classifier) this.models.reconfigure(next);
    this.recorder.configure(recorderSettings(next));
    this.learning.configure(next.learning);
    if (plan.log) {
      setLogLevel(next.log.level);
      if (next.log.format !== 'auto') setLogFormat(next.log.format);
    }
    if (plan.publisher) {
      // Unacknowledged events stay in the outbox; the new connection starts from its head.
      await this.messaging?.stop(0);
      this.startMessaging(next);
    }
    if (plan.source) {
      try {
        for (const key of await this.cameras.apply(configuredCameras(next))) this.pipeline.forgetCamera(key);
      } catch (err) {
        // Every camera runs as before: so does the configuration, and the next reload tries again.
        this.config = { ...next, cameras: previous.cameras, capture: previous.capture, preprocess: previous.preprocess, site: previous.site, line: previous.line, camera: previous.camera };
        throw err;
      }
    }
    this.needRestart = plan.needRestart;
    return { changed: plan.changed, needRestart: plan.needRestart };
  }

  status(): DaemonStatus {
    const cameras = this.cameras.status((key) => this.pipeline.cameraCounters(key));
    const capture = cameras[0]!.capture;
    const active = this.models.active;
    const index = active.index.stats();
    const recorded = this.recorder.status();
    const mqtt = this.messaging?.status() ?? null;
    const models = this.models.status();
    const problems: string[] = [];
    for (const c of cameras) {
      if (c.capture.lastError && c.capture.state !== 'running') problems.push(`capture${cameras.length > 1 ? ` of camera ${c.key}` : ''}: ${c.capture.lastError}`);
    }
    if (this.pipeline.problem) problems.push(this.pipeline.problem);
    if (recorded.refusing) problems.push(recorded.refusing);
    if (this.needRestart.length > 0) problems.push(`configuration changed for ${this.needRestart.join(', ')}: restart linewatch to apply it`);
    if (mqtt?.lastError) problems.push(mqtt.lastError);
    const sparkplug = this.messaging?.sparkplugStatus() ?? null;
    if (sparkplug?.lastError) problems.push(`sparkplug: ${sparkplug.lastError}`);
    const sync = this.sync?.status() ?? null;
    if (sync?.lastError) problems.push(`sync: ${sync.lastError}`);
    if (this.config.sync.enabled && !this.config.mqtt.enabled) problems.push('sync.enabled is set but mqtt.enabled is false: fleet sync needs the broker, so it is off');
    return {
      state: this.state,
      startedAt: this.startedAt.toISOString(),
      site: this.config.site,
      line: this.config.line,
      camera: cameras.map((c) => c.camera).join(', '),
      problems,
      capture,
      cameras,
      model: { name: models.active.name, version: models.active.version, precision: models.active.precision, provider: models.active.provider },
      models,
      references: {
        total: this.store.count(),
        searchable: index.count,
        byLabel: Object.fromEntries(this.store.countByLabel()),
        bySource: Object.fromEntries(this.store.countBySource()),
        bySourceAndLabel: this.store.countBySourceAndLabel(),
        index: index.mode,
      },
      learning: this.learning.status(),
      classifier: { ...active.classifier.settings, overrides: this.overrides.get() },
      decisions: { ...this.pipeline.counters, anomaliesByLabel: Object.fromEntries(this.pipeline.counters.anomaliesByLabel), problem: this.pipeline.problem },
      events: { backlog: mqtt?.backlog ?? this.outbox.backlog(), refused: recorded.refused, refusing: recorded.refusing, mqtt, sparkplug, images: recorded.images },
      sync,
    };
  }

  /** The periodic MQTT stats message: counts, not one message per good frame. */
  statsMessage(): Record<string, unknown> {
    const s = this.status();
    return {
      frames: { captured: sum(s.cameras, (c) => c.capture.framesReceived), dropped: sum(s.cameras, (c) => c.capture.framesDropped + c.capture.droppedWhileBusy), invalid: s.decisions.invalidFrames },
      decisions: { classified: s.decisions.classified, good: s.decisions.good, anomalies: s.decisions.anomalies, byLabel: s.decisions.anomaliesByLabel },
      model: s.model,
      problems: s.problems,
      outbox: { backlog: s.events.backlog, delivered: s.events.mqtt?.delivered ?? 0 },
      // Each camera's share of the counts above, so SCADA can tell a silent camera from a quiet line.
      cameras: s.cameras.map((c) => ({
        camera: c.key,
        state: c.capture.state,
        frames: { captured: c.capture.framesReceived, dropped: c.capture.framesDropped + c.capture.droppedWhileBusy, invalid: c.decisions.invalidFrames },
        decisions: { classified: c.decisions.classified, good: c.decisions.good, anomalies: c.decisions.anomalies },
      })),
    };
  }

  /** Adds a consumer of every decision, in frame order (the bench's latency probe, for one); returns a remove. */
  onDecision(consumer: DecisionConsumer): () => void {
    return this.pipeline.addConsumer(consumer);
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
    await this.cameras.ended();
    this.cameras.feed.close();
    await this.running;
  }

  /**
   * Stops capture, lets frames already taken finish, saves the index, flushes the outbox as far
   * as the broker allows within `flushTimeoutMs`, then closes everything. Unacknowledged events stay stored.
   */
  async stop(options: { flushTimeoutMs?: number } = {}): Promise<void> {
    await this.reloading;
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'stopping';
    this.log.info('stopping');
    const deadline = Date.now() + (options.flushTimeoutMs ?? this.config.mqtt.flushTimeoutS * 1000);
    this.models.stopChanges();
    await this.cameras.stop();
    this.ui?.close();
    await this.http?.close();
    await this.inbox?.stop();
    try {
      await this.running;
    } catch (err) {
      this.log.error('pipeline failed while stopping', { error: errorText(err) });
    }
    // The last decisions must be stored before the final flush.
    await this.recorder.flush();
    await this.learning.stop();
    try {
      this.models.active.index.save();
    } catch (err) {
      this.log.warn('could not save the search index; it will be rebuilt at next start', { error: errorText(err) });
    }
    this.sync?.close();
    await this.messaging?.stop(deadline);
    const backlog = this.outbox.backlog();
    await this.models.close();
    this.db.close();
    this.state = 'stopped';
    this.log.info('stopped', { eventsWaiting: backlog });
  }
}

/** The fleet sync's settings; the device id defaults to the MQTT client id, the identity the broker's ACL knows. */
function fleetSettings(config: Config): FleetSettings {
  const s = config.sync;
  const deviceId = deviceName(config);
  if (!/^[^/+#]+$/.test(deviceId)) {
    throw new UserError(`the fleet device id "${deviceId}" cannot be an MQTT topic level`, 'set sync.deviceId (or mqtt.clientId) to a name without "/", "+" or "#"');
  }
  return { site: config.site, deviceId, trustedSites: s.trustedSites, share: s.share, maxPeerReferences: s.maxPeerReferences, automatic: { perLabelTotal: config.learning.perLabelTotal, maxAutoShare: config.learning.maxAutoShare }, maxMessageBytes: s.maxMessageBytes, tombstoneDays: s.tombstoneDays };
}

/** The room that lets delivered events be deleted on a full disk (docs/operations.md, "Disk full"). */
function diskReserve(db: Db, config: Config, log: Logger): DiskReserve {
  const reserve = new DiskReserve(db, join(config.stateDir, 'disk-reserve'), { logger: log.child('storage') });
  if (!reserve.keep()) {
    log.warn('no room for the disk reserve: on a full disk, delivered events may not be deletable until space is freed', {
      path: reserve.path,
      hint: 'free some space on the state directory\'s disk',
    });
  }
  return reserve;
}

/**
 * The device, one name for both the references' provenance and the fleet: `sync.deviceId`, else the
 * MQTT client id (`linewatch-<site>-<line>-<camera>` by default), the identity the broker's ACL knows.
 * A peer reference then names the same device on every device that holds it.
 */
export function deviceName(config: Config): string {
  return config.sync.deviceId ?? config.mqtt.clientId ?? defaultClientId(deviceNames(config));
}

/**
 * `work`, or the signal's reason as soon as it is aborted; what `work` gives later is handed to
 * `undo` (a model that finished loading after SIGTERM is closed, not leaked).
 */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal | undefined, undo: (late: T) => unknown = () => {}): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason);
      work.then(undo, () => {});
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function recorderSettings(config: Config): RecorderSettings {
  return {
    site: config.site,
    line: config.line,
    camera: config.camera,
    outboxLimit: config.mqtt.outboxLimit,
    streams: { json: [EVENTS_TOPIC], sparkplug: [SPARKPLUG_STREAM], both: [EVENTS_TOPIC, SPARKPLUG_STREAM] }[config.mqtt.profile],
    imageLongestSide: config.images.longestSide,
  };
}

function sum<T>(items: readonly T[], count: (item: T) => number): number {
  return items.reduce((total, item) => total + count(item), 0);
}
