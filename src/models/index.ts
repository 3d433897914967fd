export { ModelManager, type ModelGate, type ModelsStatus, type PushOptions, type PushResult, type StagingStatus } from './manager.js';
export { ModelRegistry, type ModelAction, type ModelHistoryEntry, type ModelOrigin, type ModelVersion } from './registry.js';
export { classifierSettings, closeRuntime, openRuntime, type ModelLease, type ModelRuntime, type ModelSource } from './runtime.js';
export { embedImages, embedItem, enroll, thumbnailSide, listLabeledImages, readImageFile, reembedReferences, referenceThumbnail, type EmbedOptions, type EnrollResult, type LabeledImage, type SkippedImage } from './enrollment.js';
export { prepareTensorRt, tensorRtCacheDir } from './tensorrt.js';
export { ModelInbox } from './inbox.js';
