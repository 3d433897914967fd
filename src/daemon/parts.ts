import { join } from 'node:path';
import type { Logger } from '../common/index.js';
import type { Config } from '../config/index.js';
import { Encoder, loadBundle, type Bundle } from '../inference/index.js';
import { Classifier, ReferenceStore, VectorIndex, type ClassifierSettings } from '../knn/index.js';
import { Preprocessor } from '../preprocess/index.js';
import { openDatabase, type Db } from '../storage/index.js';

/** The model side: the checked bundle, its preprocessing and its encoder. */
export interface Model {
  bundle: Bundle;
  preprocessor: Preprocessor;
  encoder: Encoder;
}

/** The reference side: the store in SQLite, its search index and the classifier over them. */
export interface References {
  store: ReferenceStore;
  index: VectorIndex;
  classifier: Classifier;
}

export function databasePath(config: Config): string {
  return join(config.stateDir, 'linewatch.db');
}

export function openStateDatabase(config: Config): Db {
  return openDatabase(databasePath(config));
}

/** Loads and checks the bundle, then opens its encoder (a wrong model is refused here, at start). */
export async function openModel(config: Config, log: Logger): Promise<Model> {
  const bundle = await loadBundle(config.model);
  const preprocessor = new Preprocessor(bundle.manifest.input, config.preprocess.roi ?? undefined);
  const encoder = await Encoder.open(bundle, {
    providers: config.inference.providers,
    intraOpThreads: config.inference.threads,
    workers: config.inference.workers,
    maxBatch: config.inference.maxBatch,
    maxWaitMs: config.inference.maxWaitMs,
    logger: log.child('inference'),
  });
  log.info('model loaded', { model: bundle.key, precision: bundle.manifest.precision, provider: encoder.provider });
  return { bundle, preprocessor, encoder };
}

/** The bundle's calibrated classifier settings, overridden by the config where it sets a value. */
export function classifierSettings(config: Config, bundle: Bundle): Partial<ClassifierSettings> {
  const calibrated: Partial<ClassifierSettings> = bundle.manifest.classifier ?? {};
  return {
    k: config.knn.k ?? calibrated.k,
    threshold: config.knn.threshold ?? calibrated.threshold,
    unknownDistance: config.knn.unknownDistance ?? calibrated.unknownDistance,
    goodLabel: config.knn.goodLabel ?? calibrated.goodLabel,
  };
}

export function openReferences(db: Db, config: Config, bundle: Bundle, log: Logger): References {
  const store = new ReferenceStore(db);
  const index = VectorIndex.open(store, {
    modelKey: bundle.key,
    dimension: bundle.manifest.output.dimension,
    exactBelow: config.knn.exactBelow,
    M: config.knn.hnswM,
    efConstruction: config.knn.hnswEfConstruction,
    ef: config.knn.hnswEf,
    logger: log.child('knn'),
  });
  const classifier = new Classifier(index, store, classifierSettings(config, bundle));
  const stats = index.stats();
  log.info('references loaded', {
    references: store.count(),
    searchable: stats.count,
    mode: stats.mode,
    loadedFrom: stats.loadedFrom,
    loadMs: Math.round(stats.loadMs),
  });
  return { store, index, classifier };
}
