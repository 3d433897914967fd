import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createLogger, setLogFormat, setLogLevel, UserError, type Logger } from '../common/index.js';
import { loadConfig, type Config } from '../config/index.js';
import { databasePath, runService } from '../daemon/index.js';
import { binary, confusionMatrix, OverrideStore, perLabel, precisionRecallCurve, ReferenceStore, type Sample } from '../knn/index.js';
import { embedImages, enroll, listLabeledImages, ModelManager } from '../models/index.js';
import { Outbox } from '../events/index.js';
import { openDatabase } from '../storage/index.js';
import { renderText, runBench } from '../bench/index.js';
import { generateKeyPair, signBundle } from '../inference/index.js';
import { renderEvalChart } from './chart.js';

export interface CommandContext {
  args: string[];
  configPath: string | undefined;
  json: boolean;
  chart: string | undefined;
  label: string | undefined;
  /** bench: --quick, --duration, --fp32, --int8, --frames. */
  bench?: { quick: boolean; duration: string | undefined; fp32: string | undefined; int8: string | undefined; frames: string | undefined };
  /** keys: --name, --out, --key. */
  keys?: { name: string | undefined; out: string | undefined; key: string | undefined };
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

const pct = (x: number) => (Number.isNaN(x) ? 'n/a' : x.toFixed(3));

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
  const { model, store, close } = await openModel(config, log);
  try {
    const { ids: _ids, ...result } = await enroll(images, model, store, { log });
    const byLabel = Object.fromEntries(store.countByLabel());
    print(
      ctx,
      { ...result, references: { total: store.count(), byLabel }, model: model.key, database: databasePath(config) },
      [
        `enrolled ${result.added} references from ${folder}` + (result.alreadyEnrolled ? ` (${result.alreadyEnrolled} already enrolled)` : ''),
        ...Object.entries(result.byLabel).map(([label, n]) => `  ${label}: +${n}`),
        ...result.skipped.map((s) => `  skipped ${s.path}: ${s.reason}`),
        `store now: ${Object.entries(byLabel).map(([l, n]) => `${l} ${n}`).join(', ')}`,
        'a running daemon picks them up at its next start',
      ].join('\n'),
    );
    return result.skipped.length > 0 ? 1 : 0;
  } finally {
    await close();
  }
};

/** The model in force (the one the daemon would run: the registry's active one, or the config's), for a one-shot command. */
async function openModel(config: Config, log: Logger) {
  const db = openDatabase(databasePath(config));
  try {
    const store = new ReferenceStore(db);
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
    for await (const item of embedImages(ctx.args.map((path) => ({ path, label: '' })), model)) {
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
    for await (const item of embedImages(images, model)) {
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
  const url = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${config.http.port}/status`;
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
    `capture: ${st.capture.source} ${st.capture.state}, ${st.capture.framesReceived} frames, ${st.capture.framesDropped + st.capture.droppedWhileBusy} dropped, ${st.capture.restarts} restarts`,
    `model: ${st.model.name}@${st.model.version} (${st.model.precision}) on ${st.model.provider}`,
    `references: ${st.references.total} (${Object.entries(st.references.byLabel).map(([l, n]) => `${l} ${n}`).join(', ')}), ${st.references.index} search`,
    `decisions: ${st.decisions.classified} (${st.decisions.good} good, ${st.decisions.anomalies} anomalies), ${st.decisions.invalidFrames} invalid frames`,
    `events: ${st.events.backlog} waiting, ${st.events.mqtt ? (st.events.mqtt.connected ? `connected to ${st.events.mqtt.url}` : `not connected to ${st.events.mqtt.url}`) : 'mqtt disabled'}`,
    ...st.problems.map((p) => `problem: ${p}`),
  ];
  return lines.join('\n');
}

const bench: Command = async (ctx) => {
  if (ctx.args.length > 0) throw new UserError('bench takes no arguments', 'linewatch bench [--quick] [--duration SECONDS] [--fp32 DIR] [--int8 DIR] [--frames DIR] [--json]');
  const o = ctx.bench;
  const duration = o?.duration === undefined ? undefined : Number(o.duration);
  // The figures go to stdout; progress and the daemon's warnings to stderr.
  setLogLevel('warn');
  const document = await runBench(
    { quick: o?.quick ?? false, durationS: duration, fp32: o?.fp32, int8: o?.int8, frames: o?.frames, configPath: ctx.configPath },
    ['linewatch bench', ...process.argv.slice(3)].join(' '),
    (line) => process.stderr.write(`bench: ${line}\n`),
  );
  print(ctx, document, renderText(document));
  return 0;
};

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

export const commands = { run, enroll: enrollCommand, classify, eval: evalCommand, status, bench, keys } satisfies Record<string, Command>;
export type CommandName = keyof typeof commands;
