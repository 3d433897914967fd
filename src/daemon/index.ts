export { Daemon, type DaemonStatus } from './daemon.js';
export { enroll, listLabeledImages, embedImages, type EnrollResult, type LabeledImage } from './enrollment.js';
export { openModel, openReferences, openStateDatabase, databasePath, type Model, type References } from './parts.js';
export { runService } from './service.js';
