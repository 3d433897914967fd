export { createAnomalyEvent, EVENT_SCHEMA, type AnomalyDecision, type AnomalyEvent } from './event.js';
export { Outbox, OutboxFullError, EVENTS_TOPIC, SPARKPLUG_STREAM, type OutboxRow } from './outbox.js';
export { OutboxDrain, type DrainOptions, type DrainStatus } from './drain.js';
export { StatsReporter, STATS_SCHEMA } from './stats.js';
export { announceAvailability, availabilityWill } from './availability.js';
export { EventRecorder, maxImagesWaiting, type RecorderSettings, type RecorderStatus } from './recorder.js';
export {
  AnomalyImages,
  type AnomalyImage,
  type AnomalyImageInfo,
  type AnomalyImageListOptions,
  type AnomalyImageRetention,
} from './images.js';
export { anomalyImage, keepAsIs, viewableImage, type KeptImage } from './crop.js';
