import type { Dirent } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { addCount, checkLabel, errorText, readRegularFile, readRegularFileSync, UserError, type Logger, type RawImage } from '../common/index.js';
import type { Encoder } from '../inference/index.js';
import type { NewReference, ReferenceSource, ReferenceStore } from '../knn/index.js';
import { thumbnail, type Roi } from '../preprocess/index.js';
import type { ModelRuntime } from './runtime.js';

const imageExtensions = new Set(['.jpg', '.jpeg', '.png']);
/** Images embedded per encoder call while enrolling: bounds memory on large folders. */
const chunkSize = 64;

export interface LabeledImage {
  /** The file, or where the bytes came from (an upload, an event): the reference's origin. */
  path: string;
  label: string;
  /** The image itself when it did not come from a file. */
  data?: Buffer;
}

export interface SkippedImage {
  path: string;
  reason: string;
}

export interface EnrollResult {
  added: number;
  /** Already enrolled (same file path): enrolling a folder again adds only what is new. */
  alreadyEnrolled: number;
  skipped: SkippedImage[];
  byLabel: Record<string, number>;
}

/**
 * Lists the images of a labeled folder: each subfolder is a label (`good` is the good label),
 * or, with `label`, every image of the folder itself has that label.
 */
export async function listLabeledImages(folder: string, label?: string): Promise<LabeledImage[]> {
  const root = resolve(folder);
  const entries = await readdirOrExplain(root);
  if (label !== undefined) {
    const checked = checkLabel(label, '--label');
    return entries
      .filter((e) => isImageEntry(e))
      .map((e) => ({ path: join(root, e.name), label: checked }))
      .sort(byPath);
  }
  const images: LabeledImage[] = [];
  // Hidden folders (.thumbnails, .git) are not labels; any other subfolder is one and must be a usable label.
  for (const dir of entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).sort((a, b) => a.name.localeCompare(b.name))) {
    const dirLabel = checkLabel(dir.name, `the subfolder ${join(root, dir.name)}`, 'rename the folder');
    const files = await readdirOrExplain(join(root, dir.name));
    for (const f of files) {
      if (isImageEntry(f)) images.push({ path: join(root, dir.name, f.name), label: dirLabel });
    }
  }
  if (images.length === 0) {
    throw new UserError(
      `no labeled images in ${root}`,
      'put images in one subfolder per label (good/, scratch/, ...), JPEG or PNG; or pass --label LABEL for a folder of one label',
    );
  }
  return images.sort(byPath);
}

const imageFile = (maxBytes: number) => ({ what: 'image', maxBytes, hint: 'give regular JPEG or PNG files within capture.maxFrameBytes' });

/** An image file to enroll, classify or judge: a regular file within the frame size limit (capture.maxFrameBytes). */
export function readImageFile(path: string, maxBytes: number): Promise<Buffer> {
  return readRegularFile(path, imageFile(maxBytes));
}

export interface EmbedOptions {
  /**
   * Read the files on this thread, blocking it, instead of through libuv's pool: five round trips
   * a file (open, stat, read, end, close) cost more of a one-shot command's thread than the JPEG
   * decode of a small frame. Only for commands that do nothing else meanwhile (eval, classify,
   * offline enroll): in the daemon a slow disk would stall the frames.
   */
  blockingReads?: boolean;
}

/**
 * Reads, preprocesses and embeds images in chunks, in order; unreadable images are reported, not
 * fatal. The next chunk is read and preprocessed (on this thread) while the encoder's worker
 * embeds the current one, so the two stages overlap instead of taking turns.
 */
export async function* embedImages(
  images: readonly LabeledImage[],
  model: ModelRuntime,
  options: EmbedOptions = {},
): AsyncGenerator<EmbeddedImage> {
  const chunkAt = (start: number) => (start < images.length ? embedChunk(images.slice(start, start + chunkSize), model, options) : undefined);
  let next = chunkAt(0);
  for (let start = 0; next; start += chunkSize) {
    const current = next;
    next = chunkAt(start + chunkSize);
    // Awaited next time round; if this chunk fails first, the next one's failure has no one to tell.
    next?.catch(() => undefined);
    yield* await current;
  }
}

type EmbeddedImage = { image: LabeledImage; data: Buffer; vector: Float32Array } | { image: LabeledImage; error: string };

async function embedChunk(chunk: readonly LabeledImage[], model: ModelRuntime, { blockingReads = false }: EmbedOptions): Promise<EmbeddedImage[]> {
  const limits = imageFile(model.frames.limits.maxBytes);
  type Prepared = { image: LabeledImage; data: Buffer; tensor: Float32Array } | { image: LabeledImage; error: string };
  const prepared = await Promise.all(
    chunk.map(async (image): Promise<Prepared> => {
      try {
        const data = image.data ?? (blockingReads ? readRegularFileSync(image.path, limits) : await readRegularFile(image.path, limits));
        const tensor = model.frames.createTensor();
        await model.frames.toTensor(data, tensor);
        return { image, data, tensor };
      } catch (err) {
        return { image, error: errorText(err) };
      }
    }),
  );
  const vectors = await embedAll(
    model.encoder,
    prepared.flatMap((p) => ('tensor' in p ? [p.tensor] : [])),
  );
  let next = 0;
  return prepared.map((p) => ('tensor' in p ? { image: p.image, data: p.data, vector: vectors[next++]! } : p));
}

/**
 * Adds labeled images as references (store and index), skipping corrupt and already-enrolled ones.
 * The stored thumbnail is the ROI crop, so a later model re-embeds what this one saw.
 */
export async function enroll(
  images: readonly LabeledImage[],
  model: ModelRuntime,
  store: ReferenceStore,
  /** labeledBy: who gave the labels (the control API caller; `enroll` for a folder at start). */
  options: { source?: ReferenceSource; labeledBy?: string; log?: Logger } & EmbedOptions = {},
): Promise<EnrollResult & { ids: number[] }> {
  const known = store.origins();
  const fresh = images.filter((image) => !known.has(image.path));
  const result: EnrollResult & { ids: number[] } = { added: 0, alreadyEnrolled: images.length - fresh.length, skipped: [], byLabel: {}, ids: [] };
  let batch: { reference: NewReference; vector: Float32Array }[] = [];
  const byLabel = new Map<string, number>();
  const flush = () => {
    if (batch.length === 0) return;
    const ids = store.addMany(model.key, batch);
    model.index.addMany(ids.map((referenceId, i) => ({ referenceId, vector: batch[i]!.vector })));
    result.ids.push(...ids);
    batch = [];
  };
  for await (const item of embedImages(fresh, model, options)) {
    if ('error' in item) {
      result.skipped.push({ path: item.image.path, reason: item.error });
      options.log?.warn('image skipped', { path: item.image.path, reason: item.error });
      continue;
    }
    batch.push({
      reference: {
        label: item.image.label,
        source: options.source ?? 'human',
        origin: item.image.path,
        labeledBy: options.labeledBy ?? 'enroll',
        thumbnail: await referenceThumbnail(item.data, model),
      },
      vector: item.vector,
    });
    result.added++;
    addCount(byLabel, item.image.label);
    if (batch.length >= chunkSize) flush();
  }
  flush();
  model.index.save();
  result.byLabel = Object.fromEntries(byLabel);
  return result;
}

/** The longest side of a reference's stored image: at least the model input, so a later model can re-embed it. */
export function thumbnailSide(model: ModelRuntime): number {
  return Math.max(64, model.bundle.manifest.input.width, model.bundle.manifest.input.height);
}

/** Embeds a stored item (a reference image or an anomaly's ROI crop: not cropped again) with `model`. */
export async function embedItem(model: ModelRuntime, image: Buffer): Promise<Float32Array> {
  const tensor = model.items.createTensor();
  await model.items.toTensor(image, tensor);
  return model.encoder.embed(tensor);
}

/**
 * The image a reference keeps so a later model can re-embed it: the frame's ROI crop (its camera's ROI, else the model's), no smaller
 * than the model's input (and 64 px), so the next model sees what this one saw.
 */
export function referenceThumbnail(frame: Buffer | RawImage, model: ModelRuntime, roi: Roi | undefined = model.frames.roi): Promise<Buffer> {
  return thumbnail(frame, { longestSide: thumbnailSide(model), limits: model.frames.limits, ...(roi && { roi }) });
}

/**
 * After a model update, embeds the references that have no vector for the new model from their
 * stored thumbnails, so the reference set carries over without re-labeling.
 */
export async function reembedReferences(model: ModelRuntime, store: ReferenceStore, log: Logger, progress?: (done: number) => void): Promise<number> {
  let done = 0;
  let afterId = 0;
  for (;;) {
    const page = store.listMissingVectors(model.key, { afterId, limit: chunkSize });
    if (page.length === 0) break;
    afterId = page[page.length - 1]!.id;
    const withImage = page.filter((r) => r.thumbnail !== null);
    const tensors = await Promise.all(
      withImage.map(async (r) => {
        const tensor = model.items.createTensor();
        await model.items.toTensor(r.thumbnail!, tensor);
        return tensor;
      }),
    );
    const vectors = await embedAll(model.encoder, tensors);
    store.addVectors(model.key, withImage.map((r, i) => ({ referenceId: r.id, vector: vectors[i]! })));
    done += withImage.length;
    progress?.(done);
  }
  if (done > 0) {
    model.index.sync();
    model.index.save();
    log.info('references re-embedded for the model', { model: model.key, references: done });
  }
  return done;
}

function embedAll(encoder: Encoder, tensors: Float32Array[]): Promise<Float32Array[]> {
  return tensors.length === 0 ? Promise.resolve([]) : encoder.embedBatch(tensors);
}

/**
 * Anything named like an image but a folder: symlinks count, and a FIFO or a device is listed so
 * that reading it refuses it with its reason instead of leaving it out without a word.
 */
function isImageEntry(entry: Dirent): boolean {
  return !entry.isDirectory() && imageExtensions.has(extname(entry.name).toLowerCase());
}

async function readdirOrExplain(dir: string) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new UserError(`cannot read the folder ${dir} (${(err as NodeJS.ErrnoException).code ?? errorText(err)})`, 'check the path and its permissions');
  }
}

function byPath(a: LabeledImage, b: LabeledImage): number {
  return a.path.localeCompare(b.path);
}
