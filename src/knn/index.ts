export {
  ReferenceStore,
  isAutomatic,
  type NewReference,
  type Provenance,
  type Reference,
  type ReferenceChange,
  type ReferenceChangeListener,
  type ReferenceFilter,
  type ReferenceInfo,
  type ReferenceListOptions,
  type ReferenceSource,
  type ReferenceVector,
  type PackedVectors,
} from './store.js';
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
export {
  auroc,
  binary,
  confusionMatrix,
  perLabel,
  precisionRecallCurve,
  type BinaryMetrics,
  type LabelMetrics,
  type PrPoint,
  type Sample,
} from './metrics.js';
export { compareModels, gateModelUpdate, leaveOneOut, leaveOneOutSamples, type GateResult, type LeaveOneOut, type ModelUnderTest } from './evaluate.js';
export { OverrideStore, type ClassifierOverrides } from './overrides.js';
