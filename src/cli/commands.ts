import { existsSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { addCount, createLogger, errorText, readRegularFile, setLogFormat, setLogLevel, UserError, type Logger } from '../common/index.js';
import { loadConfig, type Config } from '../config/index.js';
import { labeledBy, readToken } from '../control/index.js';
import { databasePath, deviceName, runService, tokenPath, type DaemonStatus } from '../daemon/index.js';
import { binary, confusionMatrix, OverrideStore, perLabel, precisionRecallCurve, ReferenceStore, type ClassifierOverrides, type ReferenceInfo, type ClassifierSettings, type GateResult, type Sample } from '../knn/index.js';
import { embedImages, enroll, listLabeledImages, ModelManager, readImageFile, type EnrollResult, type LabeledImage, type ModelHistoryEntry, type ModelVersion, type PushResult } from '../models/index.js';
import { Outbox } from '../events/index.js';
import { openDatabase } from '../storage/index.js';
import { defaultDriftRuns, driftKinds, packageRoot, renderText, runBench, runDriftExperiment, type Drift, type DriftReport, type DriftRunSpec } from '../bench/index.js';
import { generateKeyPair, packBundle, signBundle } from '../inference/index.js';
import { renderEvalChart, renderLineCharts } from './chart.js';
import { askDaemon, callDaemon, daemonUrl, osUser, pushModel, type DaemonAnswer } from './client.js';
import { userCommand } from './user.js';

export interface CommandContext {
  args: string[];
  configPath: string | undefined;
  json: boolean;
  chart: string | undefined;
  label: string | undefined;
  /** bench: --quick, --duration, --fp32, --int8, --frames, --references; experiment: --fp32, --seed, --drift. */
  bench?: { quick: boolean; duration: string | undefined; fp32: string | undefined; int8: string | undefined; frames: string | undefined; references: string | undefined; seed: string | undefined; drift: string | undefined };
  /** keys: --name, --out, --key. */
  keys?: { name: string | undefined; out: string | undefined; key: string | undefined };
  /** classifier set: --k, --threshold, --unknown-distance; model push: --force. */
  control?: { k: string | undefined; threshold: string | undefined; unknownDistance: string | undefined; force: boolean };
  /** user add: --role. */
  role?: string | undefined;
  /** references list|prune|export: --source, --older-than, --newer-than (hours), --limit. */
  references?: { source: string | undefined; olderThan: string | undefined; newerThan: string | undefined; limit: string | undefined };
}

type Command = (ctx: CommandContext) => Promise<number>;

function setup(ctx: CommandContext, options: { daemon?: boolean } = {}): { config: Config; log: Logger } {
  const { config, path } = loadConfig({ path: ctx.configPath });
  // One-shot commands print their result; their progress lines would only bury it.
  setLogLevel(options.daemon || config.log.level === 'debug' ? config.log.level : 'warn');
  if (config.log.format !== 'auto' && !ctx.json) setLogFormat(config.log.format);
  const log = createLogger('linewatch');
  log.debug('configuration loaded', { path });
  return { config, log };
}

function print(ctx: CommandContext, json: unknown, text: string): void {
  process.stdout.write(ctx.json ? JSON.stringify(json, null, 2) + '\n' : text.endsWith('\n') ? text : text + '\n');
}

// A figure may arrive from JSON, where NaN became null.
const pct = (x: number | null) => (x === null || Number.isNaN(x) ? 'n/a' : x.toFixed(3));

const run: Command = async (ctx) => {
  const { config, log } = setup(ctx, { daemon: true });
  // SIGHUP reads the same file (and LINEWATCH_ variables) again.
  return runService(config, log, () => loadConfig({ path: ctx.configPath }).config);
};

const enrollCommand: Command = async (ctx) => {
  const folder = ctx.args[0];
  if (!folder || ctx.args.length > 1) throw new UserError('enroll takes one folder', 'linewatch enroll <folder> (subfolders are labels; good/ is the good label)');
  const { config, log } = setup(ctx);
  const images = await listLabeledImages(folder, ctx.label);
  const { result, references, model, where } = (await enrollLive(config, images)) ?? (await enrollOffline(config, log, images));
  print(
    ctx,
    { ...result, references, model, ...where },
    [
      `enrolled ${result.added} references from ${folder}` + (result.alreadyEnrolled ? ` (${result.alreadyEnrolled} already enrolled)` : ''),
      ...Object.entries(result.byLabel).map(([label, n]) => `  ${label}: +${n}`),
      ...result.skipped.map((s) => `  skipped ${s.path}: ${s.reason}`),
      `store now: ${Object.entries(references.byLabel).map(([l, n]) => `${l} ${n}`).join(', ')}`,
      where.running ? 'the running linewatch decides with them already' : 'linewatch did not answer: they are in its database and count from its next start',
    ].join('\n'),
  );
  return result.skipped.length > 0 ? 1 : 0;
};

type Enrolled = { result: EnrollResult; references: { total: number; byLabel: Record<string, number> }; model: string; where: { running: true; url: string } | { running: false; database: string } };

/** Sends each image through the running daemon's `enroll` command, so it counts at once; undefined when no daemon answers. */
async function enrollLive(config: Config, images: LabeledImage[]): Promise<Enrolled | undefined> {
  if (!(await askDaemon(config, 'status', {}))) return undefined;
  const result: EnrollResult = { added: 0, alreadyEnrolled: 0, skipped: [], byLabel: {} };
  const byLabel = new Map<string, number>();
  for (const [sent, image] of images.entries()) {
    let data: Buffer;
    try {
      data = await readImageFile(image.path, config.capture.maxFrameBytes);
    } catch (err) {
      result.skipped.push({ path: image.path, reason: errorText(err) });
      continue;
    }
    const reply = await askDaemon(config, 'enroll', { label: image.label, image: data.toString('base64'), name: image.path });
    if (!reply) throw new UserError(`linewatch stopped while enrolling (${sent} of ${images.length} images sent)`, 'run the same enroll again: images already enrolled are skipped');
    if (reply.ok) {
      const { added, alreadyEnrolled } = reply.result as { added: number; alreadyEnrolled: number };
      result.added += added;
      result.alreadyEnrolled += alreadyEnrolled;
      if (added > 0) addCount(byLabel, image.label, added);
    } else if (reply.error.code === 'bad_image' || reply.error.code === 'too_large') {
      result.skipped.push({ path: image.path, reason: reply.error.message });
    } else {
      throw new UserError(reply.error.message, reply.error.hint);
    }
  }
  result.byLabel = Object.fromEntries(byLabel);
  const status = await askDaemon(config, 'status', {});
  if (!status?.ok) throw new UserError('linewatch stopped while enrolling (all images sent)', 'linewatch status shows the references once it runs');
  const live = status.result as DaemonStatus;
  return { result, references: { total: live.references.total, byLabel: live.references.byLabel }, model: live.models.active.key, where: { running: true, url: daemonUrl(config) } };
}

/** Writes the references into the database of a stopped daemon (or one without HTTP): they count from its next start. */
async function enrollOffline(config: Config, log: Logger, images: LabeledImage[]): Promise<Enrolled> {
  const { model, store, close } = await openModel(config, log);
  try {
    const { ids: _ids, ...result } = await enroll(images, model, store, { labeledBy: labeledBy('cli', osUser()), log, blockingReads: true });
    return { result, references: { total: store.count(), byLabel: Object.fromEntries(store.countByLabel()) }, model: model.key, where: { running: false, database: databasePath(config) } };
  } finally {
    await close();
  }
}

/** The model in force (the one the daemon would run: the registry's active one, or the config's), for a one-shot command. */
async function openModel(config: Config, log: Logger) {
  const db = openDatabase(databasePath(config));
  try {
    const store = new ReferenceStore(db, deviceName(config));
    const models = await ModelManager.open(db, store, new OverrideStore(db), config, log, 'command');
    const close = async () => {
      await models.close();
      db.close();
    };
    return { db, store, model: models.active, close };
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Opens what classify and eval need; the reference store must have references. */
async function openClassifier(ctx: CommandContext) {
  const { config, log } = setup(ctx);
  const opened = await openModel(config, log);
  const refusal = opened.model.classifier.notReady();
  if (refusal) {
    await opened.close();
    throw refusal;
  }
  return { config, log, ...opened };
}

const classify: Command = async (ctx) => {
  if (ctx.args.length === 0) throw new UserError('classify needs at least one image', 'linewatch classify <image...>');
  const { model, close } = await openClassifier(ctx);
  try {
    const results: Record<string, unknown>[] = [];
    const lines: string[] = [];
    let failed = 0;
    for await (const item of embedImages(ctx.args.map((path) => ({ path, label: '' })), model, { blockingReads: true })) {
      if ('error' in item) {
        failed++;
        results.push({ image: item.image.path, error: item.error });
        lines.push(`${item.image.path}: cannot classify: ${item.error}`);
        continue;
      }
      const d = model.classifier.classify(item.vector);
      results.push({ image: item.image.path, ...d });
      lines.push(
        `${item.image.path}: ${d.anomaly ? 'ANOMALY' : 'good'} label=${d.label} score=${d.score.toFixed(3)} threshold=${d.threshold}` +
          (d.unknown ? ' (far from every reference)' : '') +
          `\n  nearest: ${d.neighbours.map((n) => `#${n.referenceId} ${n.label} ${n.distance.toFixed(3)}`).join(', ')}`,
      );
    }
    print(ctx, { model: model.key, results }, lines.join('\n'));
    return failed > 0 ? 1 : 0;
  } finally {
    await close();
  }
};

const evalCommand: Command = async (ctx) => {
  const folder = ctx.args[0];
  if (!folder || ctx.args.length > 1) throw new UserError('eval takes one folder', 'linewatch eval <folder> (subfolders are the true labels)');
  const images = await listLabeledImages(folder);
  const { model, close } = await openClassifier(ctx);
  try {
    const goodLabel = model.classifier.settings.goodLabel;
    const samples: Sample[] = [];
    const skipped: { path: string; reason: string }[] = [];
    for await (const item of embedImages(images, model, { blockingReads: true })) {
      if ('error' in item) {
        skipped.push({ path: item.image.path, reason: item.error });
        continue;
      }
      const d = model.classifier.classify(item.vector);
      samples.push({ trueLabel: item.image.label, predictedLabel: d.label, score: d.score, anomaly: d.anomaly });
    }
    if (!samples.some((s) => s.trueLabel === goodLabel)) {
      throw new UserError(`${folder} has no ${goodLabel}/ subfolder`, `anomaly-vs-good figures need images of good items in ${folder}/${goodLabel}/`);
    }
    const matrix = confusionMatrix(samples);
    const labels = perLabel(samples);
    const bin = binary(samples, goodLabel);
    const curve = precisionRecallCurve(samples, goodLabel);
    const settings = model.classifier.settings;
    if (ctx.chart) {
      const png = await renderEvalChart({
        title: `linewatch eval: ${model.key}, ${samples.length} images, F1 ${pct(bin.f1)}, AUROC ${pct(bin.auroc)}`,
        labels: matrix.labels,
        counts: matrix.counts,
        curve,
        operatingPoint: { precision: bin.precision, recall: bin.recall, threshold: settings.threshold },
      });
      await writeFile(ctx.chart, png);
    }
    const document = {
      model: model.key,
      folder,
      images: samples.length,
      skipped,
      settings,
      binary: bin,
      // One point per distinct score, highest threshold first: what a threshold would give.
      precisionRecall: curve,
      labels,
      confusion: matrix,
      chart: ctx.chart ?? null,
    };
    const width = Math.max(8, ...matrix.labels.map((l) => l.length));
    const text = [
      `model ${model.key}, ${samples.length} images` + (skipped.length ? `, ${skipped.length} skipped (unreadable)` : ''),
      `settings: k=${settings.k} threshold=${settings.threshold} unknownDistance=${settings.unknownDistance}`,
      '',
      `anomaly vs ${goodLabel}: precision ${pct(bin.precision)}  recall ${pct(bin.recall)}  F1 ${pct(bin.f1)}  AUROC ${pct(bin.auroc)}`,
      `precision-recall curve: ${curve.length} thresholds (one per distinct score; --chart draws it, --json lists it)`,
      '',
      `${'label'.padEnd(width)}  support  precision  recall  F1`,
      ...labels.map((l) => `${l.label.padEnd(width)}  ${String(l.support).padStart(7)}  ${pct(l.precision).padStart(9)}  ${pct(l.recall).padStart(6)}  ${pct(l.f1)}`),
      '',
      'confusion matrix (rows: true, columns: predicted)',
      `${''.padEnd(width)}  ${matrix.labels.map((l) => l.padStart(width)).join(' ')}`,
      ...matrix.labels.map((l, i) => `${l.padEnd(width)}  ${matrix.counts[i]!.map((n) => String(n).padStart(width)).join(' ')}`),
      ...(ctx.chart ? ['', `chart: ${ctx.chart}`] : []),
    ].join('\n');
    print(ctx, document, text);
    return 0;
  } finally {
    await close();
  }
};

const status: Command = async (ctx) => {
  const { config } = setup(ctx);
  const url = `${daemonUrl(config)}/status`;
  if (config.http.enabled) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
      const live = (await res.json()) as Record<string, unknown>;
      print(ctx, { running: true, url, ...live }, describeLive(live));
      return 0;
    } catch {
      // Not running (or not answering): fall back to what the database says.
    }
  }
  const dbPath = databasePath(config);
  if (!existsSync(dbPath)) {
    throw new UserError(`linewatch is not running (no answer at ${url}) and has no database at ${dbPath} yet`, 'start it: linewatch run (or systemctl start linewatch)');
  }
  const db = openDatabase(dbPath);
  try {
    const store = new ReferenceStore(db);
    const outbox = new Outbox(db);
    const offline = {
      running: false,
      url,
      database: dbPath,
      references: { total: store.count(), byLabel: Object.fromEntries(store.countByLabel()), bySource: Object.fromEntries(store.countBySource()) },
      events: { backlog: outbox.backlog() },
    };
    print(
      ctx,
      offline,
      [
        `linewatch is not running (no answer at ${url})`,
        `database ${dbPath}`,
        `references: ${offline.references.total} (${Object.entries(offline.references.byLabel).map(([l, n]) => `${l} ${n}`).join(', ') || 'none'})`,
        `events waiting for the broker: ${offline.events.backlog}`,
      ].join('\n'),
    );
    return 3;
  } finally {
    db.close();
  }
};

function describeLive(s: Record<string, unknown>): string {
  const st = s as unknown as import('../daemon/index.js').DaemonStatus;
  const lines = [
    `linewatch ${st.state} since ${st.startedAt} (${st.site}/${st.line}/${st.camera})`,
    // One line per camera when there are several, each with the decisions of its own frames.
    ...st.cameras.map(({ key, capture: c, decisions }) =>
      `${st.cameras.length > 1 ? `camera ${key}` : 'capture'}: ${c.source} ${c.state}, ${c.framesReceived} frames, ${c.framesDropped + c.droppedWhileBusy} dropped, ${c.restarts} restarts${st.cameras.length > 1 ? `, ${decisions.classified} decided` : ''}`,
    ),
    `model: ${st.model.name}@${st.model.version} (${st.model.precision}) on ${st.model.provider}`,
    `references: ${st.references.total} (${Object.entries(st.references.byLabel).map(([l, n]) => `${l} ${n}`).join(', ')}), ${st.references.index} search`,
    `learning: ${st.learning.enabled ? 'on' : 'off'}; last hour ${st.learning.lastHour.admitted} admitted, ${st.learning.lastHour.expired} expired, ${st.learning.lastHour.conflicts} removed by people's labels` +
      (Object.keys(st.learning.lastHour.refused).length > 0 ? `; refused: ${Object.entries(st.learning.lastHour.refused).map(([r, n]) => `${r} ${n}`).join(', ')}` : ''),
    `decisions: ${st.decisions.classified} (${st.decisions.good} good, ${st.decisions.anomalies} anomalies), ${st.decisions.invalidFrames} invalid frames`,
    `events: ${st.events.backlog} waiting, ${st.events.mqtt ? (st.events.mqtt.connected ? `connected to ${st.events.mqtt.url}` : `not connected to ${st.events.mqtt.url}`) : st.events.sparkplug ? 'JSON topics off' : 'mqtt disabled'}`,
    ...(st.events.sparkplug
      ? [`sparkplug: edge node ${st.events.sparkplug.groupId}/${st.events.sparkplug.edgeNodeId}, ${st.events.sparkplug.connected ? `connected to ${st.events.sparkplug.url}` : `not connected to ${st.events.sparkplug.url}`}${st.events.sparkplug.born ? ', born' : ', not born yet'}`]
      : []),
    ...st.problems.map((p) => `problem: ${p}`),
  ];
  return lines.join('\n');
}

const bench: Command = async (ctx) => {
  if (ctx.args.length > 0) throw new UserError('bench takes no arguments', 'linewatch bench [--quick] [--duration SECONDS] [--fp32 DIR] [--int8 DIR] [--frames DIR] [--references DIR] [--json]');
  const o = ctx.bench;
  const duration = o?.duration === undefined ? undefined : Number(o.duration);
  // The figures go to stdout; progress and the daemon's warnings to stderr.
  setLogLevel('warn');
  const document = await runBench(
    { quick: o?.quick ?? false, durationS: duration, fp32: o?.fp32, int8: o?.int8, frames: o?.frames, references: o?.references, configPath: ctx.configPath },
    ['linewatch bench', ...process.argv.slice(3)].join(' '),
    (line) => process.stderr.write(`bench: ${line}\n`),
  );
  print(ctx, document, renderText(document));
  return 0;
};

const EXPERIMENT_USAGE = 'linewatch experiment drift [--drift lighting|focus|noise] [--chart FILE] [--json] [--fp32 DIR] [--seed N]';

/**
 * The drift experiment (docs/learning.md): 50 human references, the sample line drifting, F1 per
 * window with learning off and on, with technician labels, and poisoned. Runs in this process on
 * temporary databases; the default model and the sample folders of the installation.
 */
const experiment: Command = async (ctx) => {
  if (ctx.args[0] !== 'drift' || ctx.args.length > 1) throw new UserError('experiment takes the name of an experiment: drift', EXPERIMENT_USAGE);
  const seed = ctx.bench?.seed === undefined ? 7 : wholeNumber('--seed', ctx.bench.seed, EXPERIMENT_USAGE);
  const kind = ctx.bench?.drift ?? 'lighting';
  if (!Object.hasOwn(driftKinds, kind)) throw new UserError(`--drift ${kind}: the line can drift in ${Object.keys(driftKinds).join(', ')}`, EXPERIMENT_USAGE);
  const drift = driftKinds[kind as keyof typeof driftKinds];
  setLogLevel('error');
  const samples = join(packageRoot, 'samples/line');
  const report = await runDriftExperiment(
    {
      model: resolve(ctx.bench?.fp32 ?? join(packageRoot, 'models/default-fp32')),
      references: join(samples, 'references'),
      stream: join(samples, 'test'),
      goodReferences: 35,
      defectReferencesPerLabel: 5,
      windowFrames: 100,
      framesPerHour: 100,
      drift,
      poisonFrames: 150,
      poisonLabel: 'sandal',
      runs: defaultDriftRuns,
      seed,
    },
    (line) => process.stderr.write(`experiment: ${line}\n`),
  );
  if (ctx.chart) await writeFile(ctx.chart, await driftChart(report));
  print(ctx, report, describeDrift(report) + (ctx.chart ? `\nchart: ${ctx.chart}` : ''));
  return 0;
};

function driftChart(report: DriftReport): Promise<Buffer> {
  const series = (poison: DriftRunSpec['poison']) => report.runs.filter((r) => r.spec.poison === poison).map((r) => ({ name: r.name, values: r.f1 }));
  return renderLineCharts({
    title: `Drift experiment: F1 per ${report.windowFrames} frames (${report.framesPerHour} frames = 1 h), drift over the second half`,
    xLabel: `window of ${report.windowFrames} frames`,
    yLabel: 'F1 (anomaly)',
    panels: [
      { title: `${report.drift.kind[0]!.toUpperCase()}${report.drift.kind.slice(1)} drift`, series: series(false) },
      { title: `Poisoned: ${report.mislabeled} mislabeled references + a burst`, series: series('spares') },
      { title: `Poisoned: all ${report.mislabeledAll} references of a label mislabeled + a burst`, series: series('all') },
    ],
  });
}

function describeDrift(report: DriftReport): string {
  const off = report.runs.find((r) => r.name === 'learning off');
  const width = Math.max(...report.runs.map((r) => r.name.length));
  return [
    `model ${report.model}; ${describeKind(report.drift)} drift; seed ${report.seed}; human references ${Object.entries(report.humanReferences).map(([l, n]) => `${l} ${n}`).join(', ')}; ${report.frames} frames, windows of ${report.windowFrames}`,
    `${'run'.padEnd(width)}  F1 per window${' '.repeat(40)}final F1  worst vs off  admitted  wrong`,
    ...report.runs.map((r) => {
      const worst = off && r.f1.length === off.f1.length ? Math.min(...r.f1.map((x, i) => x - off.f1[i]!)).toFixed(3) : '   -';
      return `${r.name.padEnd(width)}  ${r.f1.map((x) => x.toFixed(2)).join(' ').padEnd(53)}  ${r.final.f1.toFixed(3)}     ${worst.padStart(6)}     ${String(r.admitted).padStart(5)}  ${String(r.wrongAdmissions).padStart(5)}`;
    }),
  ].join('\n');
}

function describeKind(drift: Drift): string {
  switch (drift.kind) {
    case 'lighting':
      return `lighting (contrast ${drift.contrast}, brightness +${drift.brightness} at full drift)`;
    case 'focus':
      return `focus (blur sigma ${drift.sigma} px at full drift)`;
    case 'noise':
      return `noise (sigma ${drift.sigma} grey levels at full drift)`;
  }
}

const KEYS_USAGE = 'linewatch keys generate [--name NAME] [--out DIR] | linewatch keys sign <bundle-folder> --key FILE';

/** Signing keys for model bundles: devices accept only bundles signed by a key in their trusted-keys folder. */
const keys: Command = async (ctx) => {
  const [action, ...rest] = ctx.args;
  const o = ctx.keys;
  if (action === 'generate') {
    if (rest.length > 0) throw new UserError('keys generate takes no arguments', KEYS_USAGE);
    const name = o?.name ?? 'linewatch-signing';
    const made = await generateKeyPair(o?.out ?? '.', name);
    print(
      ctx,
      made,
      [
        `private key: ${made.privateKeyPath}`,
        `public key:  ${made.publicKeyPath}`,
        `key id:      ${made.keyId}`,
        `copy ${name}.pub into /etc/linewatch/trusted-keys/ on each device (models.trustedKeysDir);`,
        `keep ${name}.key secret and off the devices: whoever holds it can sign models they will run`,
      ].join('\n'),
    );
    return 0;
  }
  if (action === 'sign') {
    const folder = rest[0];
    if (!folder || rest.length > 1 || !o?.key) throw new UserError('keys sign takes one bundle folder and --key FILE', KEYS_USAGE);
    const { keyId } = await signBundle(folder, o.key);
    print(ctx, { bundle: folder, keyId }, `signed ${folder} with key ${keyId} (wrote signature.json)`);
    return 0;
  }
  throw new UserError(action ? `unknown keys action "${action}"` : 'keys needs an action', KEYS_USAGE);
};

/** Prints the control token, for HTTP clients (`Authorization: Bearer <token>`). */
const token: Command = async (ctx) => {
  if (ctx.args.length > 0) throw new UserError('token takes no arguments', 'linewatch token');
  const { config } = setup(ctx);
  const file = tokenPath(config);
  const value = readToken(file);
  print(ctx, { token: value, file }, value);
  return 0;
};

/**
 * Prints a control command's reply: `describe(result)` when done; when refused, the message, the fix
 * and any gate figures on stderr, and 1. A stopped daemon's database answered: the text says so.
 */
function report<R>(ctx: CommandContext, answer: DaemonAnswer, describe: (result: R) => string, change = true): number {
  const { running, reply } = answer;
  if (!reply.ok && !ctx.json) {
    const { message, hint, details } = reply.error;
    const gate = gateOf(details);
    process.stderr.write([`linewatch: ${message}`, ...(hint ? [`  fix: ${hint}`] : []), ...(gate ? gateFigures(gate) : [])].join('\n') + '\n');
    return 1;
  }
  const offline = change ? 'linewatch is not running: changed in its database, in force at its next start' : 'linewatch is not running: read from its database';
  print(ctx, { running, ...reply }, reply.ok ? [describe(reply.result as R), ...(running ? [] : [offline])].join('\n') : '');
  return reply.ok ? 0 : 1;
}

/** The gate's figures in a refusal's details (the figures themselves, or under `gate`). */
function gateOf(details: unknown): GateResult | undefined {
  const inner = details && typeof details === 'object' && 'gate' in details ? details.gate : details;
  return inner && typeof inner === 'object' && 'candidate' in inner ? (inner as GateResult) : undefined;
}

/** Both models' leave-one-out figures (a refusal's message already holds the gate's reason). */
function gateFigures(gate: GateResult): string[] {
  const side = (name: string, s: GateResult['active']) => `  ${name} ${s.modelKey}: F1 ${pct(s.f1)}  AUROC ${pct(s.auroc)}  (${s.references} references)`;
  return [side('active   ', gate.active), side('candidate', gate.candidate)];
}

const CLASSIFIER_USAGE = 'linewatch classifier set [--k N] [--threshold X] [--unknown-distance X] ("default" as a value clears that override)';

/** Classifier settings that win over the config file, kept in the database across restarts. */
const classifier: Command = async (ctx) => {
  const [action, ...rest] = ctx.args;
  if (action !== 'set' || rest.length > 0) throw new UserError(action === 'set' ? 'classifier set takes options, not arguments' : 'classifier needs the action "set"', CLASSIFIER_USAGE);
  const o = ctx.control;
  const given = [
    ['k', 'k', o?.k],
    ['threshold', 'threshold', o?.threshold],
    ['unknownDistance', 'unknown-distance', o?.unknownDistance],
  ] as const;
  const params = Object.fromEntries(given.flatMap(([name, flag, text]) => (text === undefined ? [] : [[name, overrideValue(flag, text)]])));
  if (Object.keys(params).length === 0) throw new UserError('classifier set needs at least one of --k, --threshold, --unknown-distance', CLASSIFIER_USAGE);
  const { config } = setup(ctx);
  return report(ctx, await callDaemon(config, 'classifier.set', params), ({ settings, overrides }: { settings: ClassifierSettings; overrides: ClassifierOverrides }) => {
    const set = Object.entries(overrides);
    return [
      `classifier in force: k ${settings.k}, threshold ${settings.threshold}, unknownDistance ${settings.unknownDistance} (good label "${settings.goodLabel}")`,
      set.length > 0 ? `overriding the configuration file: ${set.map(([name, value]) => `${name} ${value}`).join(', ')}` : 'no overrides: the configuration file (or the model calibration) decides',
    ].join('\n');
  });
};

function overrideValue(flag: string, text: string): number | null {
  if (text === 'default') return null;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new UserError(`--${flag} must be a number or "default", not "${text}"`, CLASSIFIER_USAGE);
  return value;
}

const LABEL_USAGE = 'linewatch label <event-id> <label> (the event id is in the event message and the daemon log)';

/** Makes an anomaly's item a reference with this label: the same item is decided with it from now on. */
const labelCommand: Command = async (ctx) => {
  const [event, label, ...rest] = ctx.args;
  if (!event || !label || rest.length > 0) throw new UserError('label takes an event id and a label', LABEL_USAGE);
  const { config } = setup(ctx);
  return report(ctx, await callDaemon(config, 'label', { event, label }), (r: { referenceId: number; replaced: number[] }) =>
    `event ${event} is now reference #${r.referenceId} labelled "${label}"` + (r.replaced.length > 0 ? ` (replaces #${r.replaced.join(', #')})` : ''),
  );
};

const REFERENCES_USAGE =
  'linewatch references list|prune|export [--label LABEL] [--source human|auto|peer] [--older-than HOURS] [--newer-than HOURS] [--limit N] | references remove <id...>';

/** Inspection of the reference set: list, remove, prune and export, by label, source and age. */
const references: Command = async (ctx) => {
  const [action, ...ids] = ctx.args;
  if (action === 'remove') {
    if (ids.length === 0) throw new UserError('references remove needs reference ids', REFERENCES_USAGE);
    const bad = ids.find((id) => !/^[1-9][0-9]*$/.test(id));
    if (bad !== undefined) throw new UserError(`"${bad}" is not a reference id (a whole number)`, REFERENCES_USAGE);
    const { config } = setup(ctx);
    return report(ctx, await callDaemon(config, 'reference.remove', { ids: ids.map(Number) }), (r: { removed: number }) => `removed ${r.removed} of ${ids.length} references`);
  }
  if (action !== 'list' && action !== 'prune' && action !== 'export') throw new UserError(action ? `unknown references action "${action}"` : 'references needs an action', REFERENCES_USAGE);
  if (ids.length > 0) throw new UserError(`references ${action} takes options, not arguments`, REFERENCES_USAGE);
  const filter = referenceFilter(ctx);
  const { config } = setup(ctx);
  if (action === 'prune') {
    if (Object.keys(filter).length === 0) throw new UserError('references prune needs at least one of --label, --source, --older-than, --newer-than', REFERENCES_USAGE);
    return report(ctx, await callDaemon(config, 'reference.prune', filter), (r: { removed: number }) => `removed ${r.removed} references`);
  }
  if (action === 'export') {
    // The export is the document itself: JSON whatever --json says.
    const answer = await callDaemon(config, 'reference.export', filter);
    return report({ ...ctx, json: true }, answer, () => '', false);
  }
  const limit = ctx.references?.limit === undefined ? {} : { limit: wholeNumber('--limit', ctx.references.limit) };
  return report(ctx, await callDaemon(config, 'reference.list', { ...filter, ...limit }), describeReferences, false);
};

function referenceFilter(ctx: CommandContext): Record<string, unknown> {
  const o = ctx.references;
  const hoursOf = (flag: string, text: string) => {
    const value = Number(text);
    if (text.trim() === '' || !(value > 0)) throw new UserError(`${flag} must be a number of hours above 0, not "${text}"`, REFERENCES_USAGE);
    return value;
  };
  return {
    ...(ctx.label !== undefined && { label: ctx.label }),
    ...(o?.source !== undefined && { source: o.source }),
    ...(o?.olderThan !== undefined && { olderThanH: hoursOf('--older-than', o.olderThan) }),
    ...(o?.newerThan !== undefined && { newerThanH: hoursOf('--newer-than', o.newerThan) }),
  };
}

function wholeNumber(flag: string, text: string, usage = REFERENCES_USAGE): number {
  if (!/^[1-9][0-9]*$/.test(text)) throw new UserError(`${flag} must be a whole number, not "${text}"`, usage);
  return Number(text);
}

function describeReferences(r: { total: number; references: ReferenceInfo[] }): string {
  const when = (ms: number) => new Date(ms).toISOString();
  return [
    `${r.total} references match${r.references.length < r.total ? ` (showing ${r.references.length})` : ''}`,
    ...r.references.map(
      (x) =>
        `  #${x.id}  ${x.label}  ${x.source}${x.confidence === null ? '' : ` ${x.confidence}`}  ${when(x.createdAt)}  ${x.device ?? '-'}  ${whoAdded(x)}  ${x.origin}`,
    ),
  ].join('\n');
}

/** Who made a reference what it is: the person who labeled it, else whether self-training's admission (here or on its peer) stands. */
function whoAdded(x: ReferenceInfo): string {
  if (x.labeledBy) return `labeled by ${x.labeledBy}`;
  if (x.source === 'auto') return x.confirmedAt ? 'confirmed' : 'unconfirmed';
  return x.source === 'peer' ? 'admitted by its device' : '';
}

const MODEL_USAGE = 'linewatch model push <bundle-folder-or-archive> [--force] | model list | model activate <key> | model rollback';
const modelArguments: Record<string, number> = { push: 1, list: 0, activate: 1, rollback: 0 };

/** Model versions on the device: push a signed bundle (verified, re-embedded, gated), list, activate, roll back. */
const model: Command = async (ctx) => {
  const [action, ...rest] = ctx.args;
  const wanted = action === undefined ? undefined : modelArguments[action];
  if (wanted === undefined) throw new UserError(action ? `unknown model action "${action}"` : 'model needs an action', MODEL_USAGE);
  if (rest.length !== wanted) throw new UserError(`model ${action} takes ${wanted === 0 ? 'no arguments' : 'one argument'}`, MODEL_USAGE);
  const { config } = setup(ctx);
  const swapped = (r: { key: string; previous: string }) => `model ${r.key} is active (was ${r.previous})`;
  switch (action) {
    case 'push':
      return report(ctx, await pushModel(config, await bundleArchive(rest[0]!, config.control.maxPayloadBytes), ctx.control?.force ?? false), (r: PushResult) =>
        [swapped(r), `accuracy gate ${r.forced ? 'refused, overridden with --force' : 'passed'}: ${r.gate.reason}`, ...gateFigures(r.gate)].join('\n'),
      );
    case 'activate':
      return report(ctx, await callDaemon(config, 'model.activate', { key: rest[0] }), swapped);
    case 'rollback':
      return report(ctx, await callDaemon(config, 'model.rollback', {}), swapped);
    default:
      return report(ctx, await callDaemon(config, 'model.list', {}), describeModels, false);
  }
};

/** A bundle folder packed as .tar.gz, or an archive file as it is (at most what the daemon takes: control.maxPayloadBytes). */
async function bundleArchive(path: string, maxBytes: number): Promise<Buffer> {
  let folder: boolean;
  try {
    folder = statSync(path).isDirectory();
  } catch (err) {
    throw new UserError(`cannot read the bundle ${path} (${(err as NodeJS.ErrnoException).code ?? errorText(err)})`, 'give a bundle folder (manifest.json, the ONNX file, signature.json) or its .tar.gz');
  }
  if (folder) return packBundle(path);
  if (!/\.(tar|tar\.gz|tgz)$/i.test(path)) throw new UserError(`${path} is neither a bundle folder nor a .tar/.tar.gz archive`, 'give the bundle folder, or an archive of it');
  return readRegularFile(path, { what: 'bundle archive', maxBytes, hint: 'give the bundle folder, or a .tar.gz of it within control.maxPayloadBytes' });
}

function describeModels(r: { active: string; previous: string | null; versions: ModelVersion[]; history: ModelHistoryEntry[] }): string {
  const when = (ms: number) => new Date(ms).toISOString();
  return [
    `active: ${r.active}`,
    `previous (model rollback brings it back): ${r.previous ?? 'none'}`,
    `installed:${r.versions.length === 0 ? ' none recorded yet' : ''}`,
    ...r.versions.map((v) => `  ${v.key === r.active ? '*' : ' '} ${v.key}  ${v.precision}  from ${v.origin}  ${v.signedBy ? `signed by ${v.signedBy}` : 'unsigned'}  added ${when(v.addedAt)}`),
    `history (newest first):${r.history.length === 0 ? ' none yet' : ''}`,
    ...r.history.map((h) => `  ${when(h.at)}  ${h.action} ${h.key}${h.fromKey ? ` (from ${h.fromKey})` : ''}${h.forced ? ' forced' : ''} via ${h.via}`),
  ].join('\n');
}

const user: Command = (ctx) => userCommand(ctx.args, { configPath: ctx.configPath, role: ctx.role });

export const commands = { run, enroll: enrollCommand, classify, eval: evalCommand, status, bench, experiment, keys, token, classifier, label: labelCommand, references, model, user } satisfies Record<string, Command>;
export type CommandName = keyof typeof commands;
