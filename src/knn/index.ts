export { ReferenceStore, type NewReference, type Reference, type ReferenceSource, type ReferenceVector, type PackedVectors } from './store.js';
export {
  VectorIndex,
  type IndexMode,
  type LoadedFrom,
  type OpenVectorIndexOptions,
  type VectorIndexStats,
} from './vector-index.js';
export type { Neighbour } from './exact.js';
export { Classifier, NoReferencesError, type Decision, type DecisionNeighbour } from './classifier.js';
export {
  UNKNOWN_LABEL,
  defaultClassifierSettings,
  defaultVectorIndexOptions,
  type ClassifierSettings,
  type VectorIndexOptions,
} from './options.js';
