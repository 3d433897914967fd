import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errorText, makeStateDir, RequestError, UserError, type Logger } from '../common/index.js';
import type { Config } from '../config/index.js';
import { loadBundle, unpackBundle, verifyBundleSignature, type Bundle } from '../inference/index.js';
import { binary, compareModels, gateModelUpdate, type GateResult, type LeaveOneOut, type Sample, type OverrideStore, type ReferenceStore } from '../knn/index.js';
import type { Db } from '../storage/index.js';
import { embedImages, enroll, listLabeledImages, reembedReferences, type LabeledImage } from './enrollment.js';
import { ModelRegistry, type ModelHistoryEntry, type ModelVersion } from './registry.js';
import { classifierSettings, closeRuntime, openRuntime, type ModelLease, type ModelRuntime, type ModelSource } from './runtime.js';
import { prepareTensorRt } from './tensorrt.js';

/** Consecutive failed frames of a newly swapped model, inside the rollback window, that bring the previous one back. */
const failuresForRollback = 5;

export interface StagingStatus {
  key: string | null;
  step: 'unpacking' | 'verifying' | 'loading' | 're-embedding' | 'gating' | 'swapping';
  /** References re-embedded so far, of `total`. */
  done: number;
  total: number;
  startedAt: string;
  via: string;
}

export interface ModelsStatus {
  active: { key: string; name: string; version: string; precision: string; provider: string; since: string };
  /** What a rollback brings back (null when there is nothing to go back to). */
  previous: string | null;
  staging: StagingStatus | null;
  /** The last push, activation or rollback and how it ended. */
  last: ModelHistoryEntry | null;
}

export interface PushOptions {
  /** Skip the accuracy gate (logged as forced). */
  force?: boolean;
  via: string;
}

/** The gate's verdict: the references' figures on top (pass, reason, active, candidate), each source beside them. */
export interface ModelGate extends GateResult {
  references: GateResult;
  holdout?: GateResult;
}

export interface PushResult {
  key: string;
  previous: string;
  gate: ModelGate;
  forced: boolean;
}

interface Held {
  runtime: ModelRuntime;
  leases: number;
  /** Resolves the wait of close() once the last frame gives the runtime back. */
  idle: (() => void) | null;
}

const bumpVersion = 'bump "version" in manifest.json whenever the model changes';

/**
 * The model side of the daemon: which model decides frames, and every change of it. New models
 * come in from four ways (MQTT, HTTP, CLI, the inbox folder) through push(): verified, staged
 * and gated in the background while the active model keeps deciding, then swapped between two
 * frames. The previous model stays open for an instant rollback.
 */
export class ModelManager implements ModelSource {
  private activeHeld: Held;
  private previousHeld: Held | null = null;
  private activeSince = Date.now();
  private staging: StagingStatus | null = null;
  private busy = false;
  /** Failures in a row of a model swapped in less than rollbackWindowS ago. */
  private probation: { until: number; failures: number } | null = null;
  private closed = false;

  private constructor(
    private config: Config,
    private readonly store: ReferenceStore,
    private readonly overrides: OverrideStore,
    readonly registry: ModelRegistry,
    active: ModelRuntime,
    private readonly log: Logger,
  ) {
    this.activeHeld = { runtime: active, leases: 0, idle: null };
  }

  /**
   * Opens the model in force: the registry's active model, unless the config file names a model
   * other than at the last start (a person's deliberate choice wins). Leftovers of an interrupted
   * push are removed; references without a vector for the model are re-embedded.
   */
  static async open(
    db: Db,
    store: ReferenceStore,
    overrides: OverrideStore,
    config: Config,
    log: Logger,
    /** `command`: a one-shot CLI command borrows the model in force and changes nothing (no re-embedding, no starting references). */
    use: 'daemon' | 'command' = 'daemon',
  ): Promise<ModelManager> {
    const registry = new ModelRegistry(db);
    if (use === 'daemon') removeLeftovers(config.stateDir, registry, store);
    const configured = await loadBundle(config.model);
    const earlier = registry.get(configured.key);
    const changedInPlace = earlier !== undefined && earlier.sha256 !== configured.manifest.sha256 && store.vectorIds(configured.key).length > 0;
    if (changedInPlace) {
      // The file changed under the same name and version (copied over the folder, retrained in a
      // checkout): the stored vectors of that key come from the other file, and deciding on them
      // calls every frame unknown. They are derived from the references' images, so the daemon drops
      // them and re-embeds below; a one-shot command changes nothing and says what to do.
      const problem = `the model file of ${configured.key} differs from the one its reference vectors were made with (sha256 ${earlier.sha256.slice(0, 12)} then, ${configured.manifest.sha256.slice(0, 12)} now)`;
      if (use === 'command') throw new UserError(problem, `start the daemon once (linewatch run re-embeds the references), and ${bumpVersion}`);
      log.warn('the model file changed under the same name and version: re-embedding the references with it', { model: configured.key, was: earlier.sha256, now: configured.manifest.sha256, fix: bumpVersion });
      store.removeVectorsOf(configured.key);
    }
    const state = registry.state();
    let bundle = configured;
    if (state.active && state.configKey === configured.key && state.active !== configured.key) {
      const version = registry.get(state.active);
      try {
        if (!version) throw new Error('it is not in the registry');
        bundle = await loadBundle(version.dir);
      } catch (err) {
        log.error('the active model cannot be loaded: starting on the config file\'s model', { model: state.active, error: errorText(err), fallback: configured.key });
      }
    }
    // The registry holds the sha256 of the file whose vectors are stored: a changed file is recorded once its vectors are gone.
    if ((bundle === configured || changedInPlace) && use === 'daemon') {
      registry.put({ ...describe(configured), signedBy: null, origin: 'config', addedAt: Date.now(), gate: null });
    }
    await prepareTensorRt({ providers: config.inference.providers, stateDir: config.stateDir, keep: keptManifests(registry) }, bundle.manifest, log.child('inference'));
    const runtime = await openRuntime(bundle, store, config, overrides.get(), log);
    const manager = new ModelManager(config, store, overrides, registry, runtime, log);
    if (use === 'command') return manager;
    try {
      if (state.active !== bundle.key || state.configKey !== configured.key) {
        registry.activate(bundle.key, { action: 'start', forced: false, via: 'daemon', detail: null }, { configKey: configured.key });
      }
      await reembedReferences(runtime, store, log);
      if (store.count() === 0 && config.enroll.folder) {
        const result = await enroll(await listLabeledImages(config.enroll.folder), runtime, store, { log });
        log.info('enrolled the starting references', { folder: config.enroll.folder, added: result.added, byLabel: result.byLabel, skipped: result.skipped.length });
      }
    } catch (err) {
      await closeRuntime(runtime);
      throw err;
    }
    return manager;
  }

  /** The most an unpacked bundle may hold; an archive larger than this cannot be a bundle push() takes. */
  get maxBundleBytes(): number {
    return this.config.control.maxPayloadBytes * 4;
  }

  /** The model in force. Lent per frame through acquire(); read directly for one-off work (enroll, label). */
  get active(): ModelRuntime {
    return this.activeHeld.runtime;
  }

  acquire(): ModelLease {
    const held = this.activeHeld;
    held.leases++;
    let returned = false;
    return {
      runtime: held.runtime,
      release: (outcome) => {
        if (returned) return;
        returned = true;
        held.leases--;
        if (held.leases === 0) held.idle?.();
        if (held === this.activeHeld) this.watchProbation(outcome);
      },
    };
  }

  /** Applies a new configuration's classifier keys and the persisted overrides to every open model. */
  reconfigure(config: Config): void {
    this.config = config;
    const overrides = this.overrides.get();
    for (const held of [this.activeHeld, this.previousHeld]) {
      held?.runtime.classifier.configure(classifierSettings(config.knn, held.runtime.bundle, overrides));
    }
  }

  status(): ModelsStatus {
    const { bundle, encoder } = this.active;
    const m = bundle.manifest;
    return {
      active: { key: bundle.key, name: m.name, version: m.version, precision: m.precision, provider: encoder.provider, since: new Date(this.activeSince).toISOString() },
      previous: this.registry.state().previous,
      staging: this.staging && { ...this.staging },
      last: this.registry.history(1)[0] ?? null,
    };
  }

  list(): { active: string; previous: string | null; versions: ModelVersion[]; history: ModelHistoryEntry[] } {
    return { active: this.active.key, previous: this.registry.state().previous, versions: this.registry.list(), history: this.registry.history(20) };
  }

  /**
   * Installs a bundle archive: unpack, verify the signature, load (sha256) and open (ONNX I/O),
   * re-embed every reference from its stored image, compare with the active model on the same
   * references, then swap. The active model decides every frame meanwhile. A refusal throws a
   * RequestError with the reason (and the gate's figures); the active model stays.
   */
  async push(archive: Buffer, options: PushOptions): Promise<PushResult> {
    this.claim(options.via);
    const modelsDir = join(this.config.stateDir, 'models');
    const staging = join(modelsDir, `.staging-${randomUUID()}`);
    let runtime: ModelRuntime | null = null;
    let installedDir: string | null = null;
    let key: string | null = null;
    try {
      this.step('unpacking');
      makeStateDir(modelsDir, 'stateDir');
      await unpackBundle(archive, staging, { maxBytes: this.maxBundleBytes });
      this.step('verifying');
      const signature = await verifyBundleSignature(staging, { trustedKeysDir: this.config.models.trustedKeysDir, allowUnsigned: this.config.models.allowUnsigned });
      const staged = await loadBundle(staging);
      key = staged.key;
      this.staging!.key = key;
      if (key === this.active.key) {
        throw new RequestError('already_active', `${key} is already the active model`, 'bump "version" in manifest.json for a new model');
      }
      const known = this.registry.get(key);
      if (known && known.sha256 !== staged.manifest.sha256) {
        throw new RequestError('version_conflict', `a different model with the same name and version ${key} is already installed`, bumpVersion);
      }
      // Vectors of an earlier, interrupted push of this key may be half there: start clean.
      if (!known) this.store.removeVectorsOf(key);
      installedDir = join(modelsDir, safeName(key));
      rmSync(installedDir, { recursive: true, force: true });
      renameSync(staging, installedDir);
      const bundle = await loadBundle(installedDir);
      this.step('loading');
      await prepareTensorRt({ providers: this.config.inference.providers, stateDir: this.config.stateDir, keep: keptManifests(this.registry) }, bundle.manifest, this.log.child('inference'));
      runtime = await openRuntime(bundle, this.store, this.config, this.overrides.get(), this.log);
      this.step('re-embedding', this.store.count());
      const embedding = runtime;
      await reembedReferences(embedding, this.store, this.log, (done) => {
        this.staging!.done = done;
        this.step('re-embedding');
      }).catch((err: unknown) => {
        if (err instanceof RequestError) throw err;
        throw new RequestError('model_failed', `${key} cannot embed the references: ${errorText(err)}`, 'check the model with linewatch eval before pushing it', 400);
      });
      this.step('gating');
      const gate = await this.gate(runtime);
      const forced = !gate.pass && options.force === true;
      if (!gate.pass && !forced) {
        throw new RequestError('gate_refused', `the accuracy gate refused ${key}: ${gate.reason}`, 'push a better model, or push again with --force to install it anyway (logged)', 409, gate);
      }
      if (forced) this.log.warn('accuracy gate overridden by --force', { model: key, reason: gate.reason, via: options.via });
      this.registry.put({ ...describe(bundle), signedBy: signature.signed ? signature.keyId : null, origin: 'push', addedAt: Date.now(), gate });
      this.step('swapping');
      // References labeled while this model was staged have no vector for it yet.
      await reembedReferences(runtime, this.store, this.log);
      const previous = this.active.key;
      this.swap(runtime, { action: 'push', forced, via: options.via, detail: { gate, signedBy: signature.signed ? signature.keyId : null } });
      runtime = null;
      this.prune();
      return { key, previous, gate, forced };
    } catch (err) {
      if (runtime) await closeRuntime(runtime);
      rmSync(staging, { recursive: true, force: true });
      if (installedDir && !this.registry.get(key!)) rmSync(installedDir, { recursive: true, force: true });
      if (key && !this.registry.get(key)) this.store.removeVectorsOf(key);
      const reason = errorText(err);
      this.registry.record({ action: 'refused', key: key ?? '(unreadable bundle)', fromKey: this.active.key, forced: options.force === true, via: options.via, detail: { reason, ...(err instanceof RequestError && err.details ? { gate: err.details } : {}) } });
      this.log.warn('model refused; the active model stays', { model: key, reason, via: options.via, active: this.active.key });
      throw err;
    } finally {
      this.release();
    }
  }

  /** Makes an installed version active (no gate: it passed when pushed, or was in force before). */
  async activate(key: string, options: { via: string; action?: 'activate' | 'rollback' | 'auto-rollback'; reason?: string }): Promise<{ key: string; previous: string }> {
    this.claim(options.via, key);
    try {
      if (key === this.active.key) throw new RequestError('already_active', `${key} is already the active model`);
      const previous = this.active.key;
      let runtime: ModelRuntime;
      if (this.previousHeld?.runtime.key === key) {
        runtime = this.previousHeld.runtime;
        this.previousHeld = null;
      } else {
        const version = this.registry.get(key);
        if (!version) throw new RequestError('unknown_model', `no model ${key} on this device`, 'linewatch model list shows the installed versions', 404);
        this.step('loading');
        const bundle = await loadBundle(version.dir);
        await prepareTensorRt({ providers: this.config.inference.providers, stateDir: this.config.stateDir, keep: keptManifests(this.registry) }, bundle.manifest, this.log.child('inference'));
        runtime = await openRuntime(bundle, this.store, this.config, this.overrides.get(), this.log);
      }
      // Only references added since it was last in force need a vector: nothing else is re-embedded.
      this.step('re-embedding');
      runtime.index.sync();
      await reembedReferences(runtime, this.store, this.log);
      runtime.classifier.configure(classifierSettings(this.config.knn, runtime.bundle, this.overrides.get()));
      this.swap(runtime, { action: options.action ?? 'activate', forced: false, via: options.via, detail: options.reason ? { reason: options.reason } : null });
      return { key, previous };
    } finally {
      this.release();
    }
  }

  /** Brings the previous model back at once (it is still open after a swap). */
  rollback(options: { via: string; reason?: string; automatic?: boolean }): Promise<{ key: string; previous: string }> {
    const previous = this.registry.state().previous;
    if (!previous) return Promise.reject(new RequestError('no_previous', 'there is no previous model to roll back to', 'linewatch model list shows the installed versions'));
    return this.activate(previous, { via: options.via, action: options.automatic ? 'auto-rollback' : 'rollback', ...(options.reason ? { reason: options.reason } : {}) });
  }

  /** Refuses new changes and makes a push under way give up at its next step (the daemon is stopping). */
  stopChanges(): void {
    this.closed = true;
  }

  /** Closes every model once the frames holding them are decided. */
  async close(): Promise<void> {
    this.closed = true;
    for (const held of [this.activeHeld, this.previousHeld]) if (held) await closeWhenIdle(held);
  }

  /**
   * Both models on the same labeled data: leave-one-out over the references (confirmed labels
   * included, they are references), and the holdout folder when there is one.
   */
  private async gate(candidate: ModelRuntime): Promise<ModelGate> {
    const side = (runtime: ModelRuntime) => ({ modelKey: runtime.key, dimension: runtime.bundle.manifest.output.dimension, settings: { ...runtime.classifier.settings } });
    const tolerance = this.config.models.gateTolerance;
    const references = gateModelUpdate(this.store, side(this.active), side(candidate), tolerance);
    const folder = this.config.models.holdoutFolder;
    if (!folder) return { ...references, references };
    const images = await listLabeledImages(folder);
    const holdout = compareModels(await evaluateOn(images, this.active), await evaluateOn(images, candidate), tolerance, (n) => `the same ${n} images`);
    return {
      ...references,
      pass: references.pass && holdout.pass,
      reason: `references: ${references.reason}; holdout folder ${folder}: ${holdout.reason}`,
      references,
      holdout,
    };
  }

  /** Between two frames: the next acquire() gets the new model; frames in flight finish on the old one. */
  private swap(runtime: ModelRuntime, entry: Omit<ModelHistoryEntry, 'at' | 'key' | 'fromKey'>): void {
    const old = this.activeHeld;
    this.registry.activate(runtime.key, entry);
    this.activeHeld = { runtime, leases: 0, idle: null };
    this.activeSince = Date.now();
    const retired = this.previousHeld;
    this.previousHeld = old;
    if (retired) void closeWhenIdle(retired);
    const window = this.config.models.rollbackWindowS * 1000;
    this.probation = entry.action === 'push' || entry.action === 'activate' ? (window > 0 ? { until: Date.now() + window, failures: 0 } : null) : null;
    this.log.info('model swapped', { model: runtime.key, previous: old.runtime.key, action: entry.action, via: entry.via, forced: entry.forced, provider: runtime.encoder.provider });
  }

  /** A new model that fails frame after frame inside the window goes back out by itself. */
  private watchProbation(outcome: 'decided' | 'failed'): void {
    const p = this.probation;
    if (!p) return;
    if (Date.now() > p.until) {
      this.probation = null;
      return;
    }
    p.failures = outcome === 'failed' ? p.failures + 1 : 0;
    if (p.failures < failuresForRollback || this.busy || this.closed) return;
    this.probation = null;
    const reason = `${this.active.key} failed ${p.failures} frames in a row within ${this.config.models.rollbackWindowS} s of the swap`;
    this.log.error('rolling back to the previous model', { reason });
    this.rollback({ via: 'daemon', reason, automatic: true }).catch((err) => this.log.error('automatic rollback failed', { error: errorText(err) }));
  }

  /** Removes versions beyond models.keep (never the active or previous one), with their vectors and files. */
  private prune(): void {
    const { active, previous } = this.registry.state();
    const pushed = this.registry.list().filter((v) => v.origin === 'push' && v.key !== active && v.key !== previous);
    const excess = pushed.length - Math.max(0, this.config.models.keep - 2);
    for (const version of pushed.slice(0, Math.max(0, excess))) {
      this.store.removeVectorsOf(version.key);
      this.registry.remove(version.key);
      this.registry.record({ action: 'removed', key: version.key, fromKey: null, forced: false, via: 'daemon', detail: { reason: `more than models.keep (${this.config.models.keep}) versions` } });
      rmSync(version.dir, { recursive: true, force: true });
    }
  }

  private claim(via: string, key: string | null = null): void {
    if (this.closed) throw new RequestError('stopping', 'the daemon is stopping', 'try again once it runs', 503);
    if (this.busy) {
      const s = this.staging;
      throw new RequestError('busy', `another model change is under way${s ? ` (${s.key ?? 'a bundle'}: ${s.step}, via ${s.via})` : ''}`, 'wait for it to finish (linewatch status shows its progress)', 409);
    }
    this.busy = true;
    this.staging = { key, step: 'unpacking', done: 0, total: 0, startedAt: new Date().toISOString(), via };
  }

  private step(step: StagingStatus['step'], total?: number): void {
    if (this.closed) throw new RequestError('stopping', 'the daemon is stopping: the model change was abandoned', 'push it again once linewatch runs', 503);
    if (!this.staging) return;
    this.staging.step = step;
    if (total !== undefined) this.staging.total = total;
    this.log.info('model change', { model: this.staging.key, step, via: this.staging.via });
  }

  private release(): void {
    this.busy = false;
    this.staging = null;
  }
}

/** One model's binary figures on a labeled folder, as `linewatch eval` computes them. */
async function evaluateOn(images: readonly LabeledImage[], runtime: ModelRuntime): Promise<LeaveOneOut> {
  const samples: Sample[] = [];
  for await (const item of embedImages(images, runtime)) {
    if ('error' in item) continue;
    const d = runtime.classifier.classify(item.vector);
    samples.push({ trueLabel: item.image.label, predictedLabel: d.label, score: d.score, anomaly: d.anomaly });
  }
  const figures = binary(samples, runtime.classifier.settings.goodLabel);
  return { modelKey: runtime.key, references: samples.length, f1: figures.f1, auroc: figures.auroc, precision: figures.precision, recall: figures.recall };
}

function describe(bundle: Bundle): Pick<ModelVersion, 'key' | 'name' | 'version' | 'precision' | 'dir' | 'sha256'> {
  const m = bundle.manifest;
  return { key: bundle.key, name: m.name, version: m.version, precision: m.precision, dir: bundle.dir, sha256: m.sha256 };
}

function keptManifests(registry: ModelRegistry): { version: string; sha256: string }[] {
  return registry.list().map((v) => ({ version: v.version, sha256: v.sha256 }));
}

/** Folder name of an installed version: the key with anything unsafe for a path replaced. */
function safeName(key: string): string {
  return key.replace(/[^A-Za-z0-9_.@-]+/g, '_');
}

/**
 * A push interrupted by a crash leaves a folder (and maybe vectors) that the registry never
 * named: the registry row is written last, so whatever it does not name is half a push.
 */
function removeLeftovers(stateDir: string, registry: ModelRegistry, store: ReferenceStore): void {
  const dir = join(stateDir, 'models');
  if (!existsSync(dir)) return;
  const named = new Set(registry.list().map((v) => v.dir));
  for (const entry of readdirSync(dir)) if (!named.has(join(dir, entry))) rmSync(join(dir, entry), { recursive: true, force: true });
  // Vectors of keys that were pushed here but are no longer installed; vectors of models a config
  // file once named stay (switching back to one then needs no re-embedding).
  const installed = new Set(registry.list().map((v) => v.key));
  const pushed = new Set(registry.history(10_000).map((h) => h.key));
  for (const key of store.vectorKeys()) if (!installed.has(key) && pushed.has(key)) store.removeVectorsOf(key);
}

async function closeWhenIdle(held: Held): Promise<void> {
  if (held.leases > 0) await new Promise<void>((resolve) => (held.idle = resolve));
  await closeRuntime(held.runtime);
}

