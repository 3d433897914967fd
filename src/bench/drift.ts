import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { createLogger, type Logger } from '../common/index.js';
import { configSchema } from '../config/index.js';
import { binary, OverrideStore, ReferenceStore, type Sample } from '../knn/index.js';
import { Learning, type LearningSettings } from '../learning/index.js';
import { embedImages, listLabeledImages, ModelManager, type LabeledImage } from '../models/index.js';
import { openDatabase } from '../storage/index.js';
import { gaussian, mulberry32 } from './knn.js';

/** One way of running the line: learning on or off, technician labels, a poisoning. */
export interface DriftRunSpec {
  name: string;
  learning: boolean;
  /** False alarms on drifted good items a technician labels `good` (the first ones seen after the drift starts). */
  technicianLabels: number;
  /**
   * Poisoned: reference images of `poisonLabel` are labeled `good` by mistake, the spares not taken
   * as its references (`spares`) or all of them (`all`: the label has no references of its own, so
   * each of its items has human `good` neighbours), and a burst of items of that label runs through
   * the line before the drift.
   */
  poison: false | 'spares' | 'all';
  /** Learning settings beyond the defaults (the caps lifted, say). */
  settings: Partial<LearningSettings>;
}

/**
 * How the line drifts, at full strength. lighting: a pixel p becomes contrast * p + brightness (the
 * lamps age, daylight comes in). focus: a Gaussian blur of this sigma in pixels (the lens goes out of
 * focus or gets dirty). noise: Gaussian sensor noise of this sigma in grey levels (the camera's gain
 * is turned up for a darker line).
 */
export type Drift =
  | { kind: 'lighting'; contrast: number; brightness: number }
  | { kind: 'focus'; sigma: number }
  | { kind: 'noise'; sigma: number };

export const driftKinds: Record<Drift['kind'], Drift> = {
  lighting: { kind: 'lighting', contrast: 0.75, brightness: 35 },
  focus: { kind: 'focus', sigma: 3 },
  noise: { kind: 'noise', sigma: 50 },
};

export interface DriftOptions {
  model: string;
  /** Labeled folder the human references are taken from (the first ones of each label, by name). */
  references: string;
  /** Labeled folder streamed as the line (shuffled, drifting from its middle on). */
  stream: string;
  goodReferences: number;
  defectReferencesPerLabel: number;
  windowFrames: number;
  /** The simulated line's rate: how many frames make an hour (the caps and expiry count hours). */
  framesPerHour: number;
  /** What changes on the line at full drift; it ramps up linearly over the stream's second half. */
  drift: Drift;
  poisonFrames: number;
  /** The defect label whose spare reference images are mislabeled `good` in the poisoned runs. */
  poisonLabel: string;
  runs: DriftRunSpec[];
  seed: number;
}

export interface DriftRunResult {
  name: string;
  spec: DriftRunSpec;
  /** F1 (anomaly positive) per window of `windowFrames`, in stream order. */
  f1: number[];
  final: { f1: number; precision: number; recall: number };
  admitted: number;
  /** Admitted as a label other than the item's true one (or any poison frame admitted). */
  wrongAdmissions: number;
  autoAtEnd: Record<string, number>;
  refused: Partial<Record<string, number>>;
  expired: number;
  conflicts: number;
  labelsGiven: number;
}

export interface DriftReport {
  model: string;
  humanReferences: Record<string, number>;
  /** Reference images of `poisonLabel` labeled `good` in the poisoned runs (`spares`, and `all`). */
  mislabeled: number;
  mislabeledAll: number;
  frames: number;
  windowFrames: number;
  framesPerHour: number;
  drift: DriftOptions['drift'];
  /** The shuffle of the stream and the choice of the poison burst. */
  seed: number;
  settings: LearningSettings;
  runs: DriftRunResult[];
}

interface StreamItem {
  data: Buffer;
  label: string;
  origin: string;
  poison: boolean;
  drifted: boolean;
}

const noCaps: Partial<LearningSettings> = { perLabelPerHour: 1_000_000, perLabelTotal: 1_000_000, maxAutoShare: 1 };

/** Admission by the nearest neighbour alone: no agreement, no radius, no margin (only the caps and the human neighbour). */
const loosePolicy: Partial<LearningSettings> = { neighbours: 1, radiusShare: 1, radiusPercentile: 100, marginRatio: 1 };

export const defaultDriftRuns: DriftRunSpec[] = [
  { name: 'learning off', learning: false, technicianLabels: 0, poison: false, settings: {} },
  { name: 'learning on', learning: true, technicianLabels: 0, poison: false, settings: {} },
  { name: 'learning on + 5 labels', learning: true, technicianLabels: 5, poison: false, settings: {} },
  { name: 'learning off + 5 labels', learning: false, technicianLabels: 5, poison: false, settings: {} },
  { name: 'poisoned, off', learning: false, technicianLabels: 0, poison: 'spares', settings: {} },
  { name: 'poisoned, on', learning: true, technicianLabels: 0, poison: 'spares', settings: {} },
  // The policy alone refuses the poison (see docs/learning.md); with it loosened, the caps are what is left.
  { name: 'poisoned, loose policy, caps', learning: true, technicianLabels: 0, poison: 'spares', settings: loosePolicy },
  { name: 'poisoned, loose policy, no caps', learning: true, technicianLabels: 0, poison: 'spares', settings: { ...loosePolicy, ...noCaps } },
  // Every item of the label has human neighbours that say `good`: the human-neighbour rule holds, the caps are the guard.
  { name: 'label mislabeled, off', learning: false, technicianLabels: 0, poison: 'all', settings: {} },
  { name: 'label mislabeled, on', learning: true, technicianLabels: 0, poison: 'all', settings: {} },
  { name: 'label mislabeled, loose policy, caps', learning: true, technicianLabels: 0, poison: 'all', settings: { ...loosePolicy, neighbours: 5 } },
  { name: 'label mislabeled, loose policy, no caps', learning: true, technicianLabels: 0, poison: 'all', settings: { ...loosePolicy, neighbours: 5, ...noCaps } },
];

/**
 * The drift experiment (docs/learning.md): few human references, the sample line streamed while its
 * lighting drifts, F1 per window with learning off and on, with a few technician labels, and under
 * a poisoning burst with and without the caps. Everything in this process on real SQLite files and
 * the real model; the line's hours are simulated (`framesPerHour`) so the caps and expiry count.
 */
export async function runDriftExperiment(options: DriftOptions, progress: (line: string) => void): Promise<DriftReport> {
  const log = createLogger('drift');
  const references = await listLabeledImages(options.references);
  const humans = pickHumans(references, options);
  const mislabeled = references.filter((r) => r.label === options.poisonLabel && !humans.includes(r)).map((r) => ({ ...r, label: 'good' }));
  const poisoned = {
    none: humans,
    spares: [...humans, ...mislabeled],
    all: [...humans.map((h) => (h.label === options.poisonLabel ? { ...h, label: 'good' } : h)), ...mislabeled],
  };
  const stream = await makeStream(await listLabeledImages(options.stream), options);
  const poison = await makePoison(stream, options);
  const defaults = configSchema.parse({}).learning;
  const runs: DriftRunResult[] = [];
  // The same model embeds the same frame the same way in every run: once is enough.
  const vectors = new Map<string, Float32Array>();
  for (const spec of options.runs) {
    progress(`${spec.name}: ${stream.length + (spec.poison ? poison.length : 0)} frames`);
    runs.push(await runOnce(spec, options, poisoned[spec.poison || 'none'], spec.poison ? withPoison(stream, poison) : stream, vectors, log));
  }
  const byLabel: Record<string, number> = {};
  for (const h of humans) byLabel[h.label] = (byLabel[h.label] ?? 0) + 1;
  return {
    model: options.model,
    humanReferences: byLabel,
    mislabeled: mislabeled.length,
    mislabeledAll: references.filter((r) => r.label === options.poisonLabel).length,
    frames: stream.length,
    windowFrames: options.windowFrames,
    framesPerHour: options.framesPerHour,
    drift: options.drift,
    seed: options.seed,
    settings: { ...defaults, enabled: true },
    runs,
  };
}

function pickHumans(images: LabeledImage[], o: DriftOptions): LabeledImage[] {
  const taken = new Map<string, number>();
  return images.filter((image) => {
    const n = taken.get(image.label) ?? 0;
    const limit = image.label === 'good' ? o.goodReferences : o.defectReferencesPerLabel;
    if (n >= limit) return false;
    taken.set(image.label, n + 1);
    return true;
  });
}

/** The stream folder shuffled (seeded), its second half drifting: the line changes a little more with every frame. */
async function makeStream(images: LabeledImage[], o: DriftOptions): Promise<StreamItem[]> {
  const random = mulberry32(o.seed);
  const order = images.map((image) => ({ image, key: random() })).sort((a, b) => a.key - b.key).map((x) => x.image);
  const half = Math.floor(order.length / 2);
  return Promise.all(
    order.map(async (image, i) => {
      const strength = i < half ? 0 : (i - half + 1) / (order.length - half);
      // Each frame its own noise source: the frames decode concurrently, in no fixed order.
      const data = await drifted(image.path, o.drift, strength, mulberry32(Math.imul(o.seed + 2, 0x9e3779b1) + i));
      return { data, label: image.label, origin: `${image.path}#${i}`, poison: false, drifted: strength > 0 };
    }),
  );
}

/** The image as the drifted line shows it at this strength (0: as it is, 1: full drift), as PNG. */
export async function drifted(path: string, drift: Drift, strength: number, random: () => number): Promise<Buffer> {
  const image = sharp(path);
  if (strength === 0) return image.png().toBuffer();
  switch (drift.kind) {
    case 'lighting':
      return image.linear(1 + (drift.contrast - 1) * strength, drift.brightness * strength).png().toBuffer();
    case 'focus': {
      const sigma = drift.sigma * strength;
      // sharp's Gaussian blur starts at sigma 0.3; a smaller one changes less than a grey level here.
      return (sigma < 0.3 ? image : image.blur(sigma)).png().toBuffer();
    }
    case 'noise': {
      const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
      const sigma = drift.sigma * strength;
      for (let j = 0; j < data.length; j++) data[j] = Math.min(255, Math.max(0, Math.round(data[j]! + sigma * gaussian(random))));
      return sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } }).png().toBuffer();
    }
  }
}

/**
 * The burst: items of `poisonLabel` (the label mislabeled `good` among the references), each
 * shown again and again with a slightly different exposure, as a run of one defect would. Truly anomalies.
 */
async function makePoison(stream: StreamItem[], o: DriftOptions): Promise<StreamItem[]> {
  const items = stream.filter((s) => s.label === o.poisonLabel && !s.drifted);
  const random = mulberry32(o.seed + 1);
  return Promise.all(
    Array.from({ length: o.poisonFrames }, async (_, i) => {
      const item = items[i % items.length]!;
      const data = await sharp(item.data).linear(0.95 + random() * 0.1, random() * 6 - 3).png().toBuffer();
      return { data, label: item.label, origin: `poison-${i}`, poison: true, drifted: false };
    }),
  );
}

/** The poison burst goes in at a quarter of the stream, before the drift. */
function withPoison(stream: StreamItem[], poison: StreamItem[]): StreamItem[] {
  const at = Math.floor(stream.length / 4);
  return [...stream.slice(0, at), ...poison, ...stream.slice(at)];
}

async function runOnce(
  spec: DriftRunSpec,
  o: DriftOptions,
  humans: LabeledImage[],
  stream: StreamItem[],
  vectors: Map<string, Float32Array>,
  log: Logger,
): Promise<DriftRunResult> {
  const dir = mkdtempSync(join(tmpdir(), 'linewatch-drift-'));
  const db = openDatabase(join(dir, 'linewatch.db'));
  const config = configSchema.parse({ stateDir: dir, model: o.model, inference: { providers: ['cpu'] } });
  let models: ModelManager | null = null;
  try {
    const store = new ReferenceStore(db, 'experiment/drift/camera');
    models = await ModelManager.open(db, store, new OverrideStore(db), config, log, 'command');
    const model = models.active;
    const start = Date.UTC(2025, 0, 1);
    const hourMs = 3_600_000;
    let clock = start;
    const learning = new Learning(store, models, { ...config.learning, ...spec.settings, enabled: spec.learning }, log, () => clock);
    learning.start();
    for await (const item of embedImages(humans, model)) {
      if ('error' in item) throw new Error(`${item.image.path}: ${item.error}`);
      const id = store.add({ label: item.image.label, source: 'human', origin: item.image.path, labeledBy: 'experiment', createdAt: clock }, model.key, item.vector);
      model.index.add(id, item.vector);
    }
    const truth = new Map<string, StreamItem>();
    const samples: Sample[] = [];
    let labelsLeft = spec.technicianLabels;
    const missing = stream.filter((item) => !vectors.has(item.origin)).map((item) => ({ path: item.origin, label: item.label, data: item.data }));
    for await (const embedded of embedImages(missing, model)) {
      if ('error' in embedded) throw new Error(`${embedded.image.path}: ${embedded.error}`);
      vectors.set(embedded.image.path, embedded.vector);
    }
    for (const [i, item] of stream.entries()) {
      clock = start + Math.round((i * hourMs) / o.framesPerHour);
      const vector = vectors.get(item.origin)!;
      const decision = model.classifier.classify(vector);
      samples.push({ trueLabel: item.label, predictedLabel: decision.label, score: decision.score, anomaly: decision.anomaly });
      const frame = { seq: i, capturedAt: clock, data: item.data, origin: `${i}` };
      truth.set(`frame:${i}#${i}`, item);
      learning.consume({ frame, vector, decision, model });
      await learning.idle();
      if (labelsLeft > 0 && item.drifted && decision.anomaly && item.label === 'good') {
        // A technician sees the false alarm and labels the item good (the `label` command).
        labelsLeft--;
        const id = store.add({ label: 'good', source: 'human', origin: item.origin, labeledBy: 'experiment', createdAt: clock }, model.key, vector);
        model.index.add(id, vector);
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (i % 10 === 0) learning.maintain();
    }
    const status = learning.status();
    await learning.stop();
    const autos = store.list({ source: 'auto', limit: 1_000_000 });
    const wrong = autos.filter((a) => {
      const item = truth.get(a.origin);
      return item !== undefined && (item.poison || item.label !== a.label);
    }).length;
    const windows: number[] = [];
    for (let w = 0; w < samples.length; w += o.windowFrames) windows.push(round(binary(samples.slice(w, w + o.windowFrames), 'good').f1));
    const all = binary(samples, 'good');
    const autoAtEnd: Record<string, number> = {};
    for (const a of autos) autoAtEnd[a.label] = (autoAtEnd[a.label] ?? 0) + 1;
    return {
      name: spec.name,
      spec,
      f1: windows,
      final: { f1: round(all.f1), precision: round(all.precision), recall: round(all.recall) },
      admitted: status.total.admitted,
      wrongAdmissions: wrong,
      autoAtEnd,
      refused: status.total.refused,
      expired: status.total.expired,
      conflicts: status.total.conflicts,
      labelsGiven: spec.technicianLabels - labelsLeft,
    };
  } finally {
    await models?.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
