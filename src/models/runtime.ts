import { errorText, RequestError, type Logger } from '../common/index.js';
import { decodeThreads, frameLimits, type Config } from '../config/index.js';
import { Encoder, type Bundle } from '../inference/index.js';
import { Classifier, VectorIndex, type ClassifierOverrides, type ClassifierSettings, type ReferenceStore } from '../knn/index.js';
import { Preprocessor, probeImage } from '../preprocess/index.js';

/**
 * Everything that belongs to one model key, as one unit: its checked bundle, preprocessing, the
 * encoder sessions, the search index over its vectors and the classifier. A new model is built
 * as a second runtime beside the running one and swapped in between two frames.
 */
export interface ModelRuntime {
  readonly key: string;
  readonly bundle: Bundle;
  /** Camera frames: the ROI is cropped first. */
  readonly frames: Preprocessor;
  /** Stored items (anomaly images, reference thumbnails): already cropped to the ROI, so no crop again. */
  readonly items: Preprocessor;
  readonly encoder: Encoder;
  readonly index: VectorIndex;
  readonly classifier: Classifier;
}

/** Lends the model in force for one frame; the frame gives it back when decided, saying whether inference worked. */
export interface ModelLease {
  readonly runtime: ModelRuntime;
  release(outcome: 'decided' | 'failed'): void;
}

/** Where frames get their model: the ModelManager, which may swap it between two frames. */
export interface ModelSource {
  acquire(): ModelLease;
}

/** Overrides first, then the config file, then the bundle's calibrated values. */
export function classifierSettings(knn: Config['knn'], bundle: Bundle, overrides: ClassifierOverrides = {}): Partial<ClassifierSettings> {
  const calibrated: Partial<ClassifierSettings> = bundle.manifest.classifier ?? {};
  return {
    k: overrides.k ?? knn.k ?? calibrated.k,
    threshold: overrides.threshold ?? knn.threshold ?? calibrated.threshold,
    unknownDistance: overrides.unknownDistance ?? knn.unknownDistance ?? calibrated.unknownDistance,
    goodLabel: knn.goodLabel ?? calibrated.goodLabel,
  };
}

/** Opens the encoder sessions (a model whose ONNX does not fit its manifest is refused here) and the index of its vectors. */
export async function openRuntime(
  bundle: Bundle,
  store: ReferenceStore,
  config: Config,
  overrides: ClassifierOverrides,
  log: Logger,
): Promise<ModelRuntime> {
  const limits = frameLimits(config);
  // Camera frames may be large JPEGs: decoded on several threads. Stored items are small crops.
  const frames = new Preprocessor(bundle.manifest.input, config.preprocess.roi ?? undefined, limits, { threads: decodeThreads(config) });
  const items = new Preprocessor(bundle.manifest.input, undefined, limits);
  const encoder = await Encoder.open(bundle, {
    providers: config.inference.providers,
    intraOpThreads: config.inference.threads,
    workers: config.inference.workers,
    maxBatch: config.inference.maxBatch,
    maxWaitMs: config.inference.maxWaitMs,
    logger: log.child('inference'),
  });
  try {
    await probe(bundle, items, encoder);
    const index = VectorIndex.open(store, {
      modelKey: bundle.key,
      dimension: bundle.manifest.output.dimension,
      exactBelow: config.knn.exactBelow,
      M: config.knn.hnswM,
      efConstruction: config.knn.hnswEfConstruction,
      ef: config.knn.hnswEf,
      logger: log.child('knn'),
    });
    const classifier = new Classifier(index, store, classifierSettings(config.knn, bundle, overrides));
    log.info('model loaded', { model: bundle.key, precision: bundle.manifest.precision, provider: encoder.provider, references: index.size, index: index.mode });
    return { key: bundle.key, bundle, frames, items, encoder, index, classifier };
  } catch (err) {
    await encoder.close();
    throw err;
  }
}

/** Ends a runtime's threads: the encoder's sessions and the frames' decode threads. */
export async function closeRuntime(runtime: ModelRuntime): Promise<void> {
  await Promise.all([runtime.encoder.close(), runtime.frames.close()]);
}

/**
 * A model whose sha and shapes are right can still give NaN or all-zero vectors (broken weights):
 * one gradient image, embedded at load, refuses it with the reason before it decides any frame
 * (the worker rejects a NaN, infinite or all-zero vector).
 */
async function probe(bundle: Bundle, items: Preprocessor, encoder: Encoder): Promise<void> {
  const tensor = items.createTensor();
  await items.toTensor(await probeImage(bundle.manifest.input.width, bundle.manifest.input.height), tensor);
  try {
    await encoder.embed(tensor);
  } catch (err) {
    throw new RequestError('model_failed', `${bundle.key} gives no usable vector for a probe image: ${errorText(err)}`, 'the model file is broken (NaN or zero weights?) or does not fit its manifest; export it again and check it with linewatch eval');
  }
}
