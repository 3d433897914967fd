export { createAnomalyEvent, type AnomalyDecision, type AnomalyEvent, type Neighbour } from './event.js';
export { Outbox, OutboxFullError, EVENTS_TOPIC, type OutboxRow } from './outbox.js';
export {
  Publisher,
  publisherDefaults,
  defaultTopicRoot,
  type PublisherOptions,
  type PublisherStatus,
  type StopOptions,
} from './publisher.js';
