import { v7 as uuidv7 } from 'uuid';
import type { DecisionNeighbour } from '../knn/index.js';


/** The `schema` field of every event; docs/schemas/event.schema.json describes it. */
export const EVENT_SCHEMA = 'linewatch/event/1';

/** The JSON published on `<topicRoot>events` for every anomaly decision. */
export interface AnomalyEvent {
  schema: typeof EVENT_SCHEMA;
  /** UUIDv7: sorts by creation time, so consumers can order and de-duplicate (QoS 1 may repeat). */
  id: string;
  type: 'anomaly';
  capturedAt: string;
  decidedAt: string;
  site: string;
  line: string;
  camera: string;
  score: number;
  threshold: number;
  label: string;
  unknown: boolean;
  neighbours: DecisionNeighbour[];
  model: { name: string; version: string };
  frame: { seq: number; origin: string };
  /** Where the item's image is served while retention keeps it (GET on the daemon's HTTP port). */
  image: { path: string };
}

/** What the daemon knows when the classifier calls a frame an anomaly: the event less its id, type and times. */
export interface AnomalyDecision extends Omit<AnomalyEvent, 'schema' | 'id' | 'type' | 'capturedAt' | 'decidedAt' | 'neighbours' | 'image'> {
  /** Frame.capturedAt: ms since epoch, or a Date. */
  capturedAt: number | Date;
  /** Defaults to now. */
  decidedAt?: number | Date;
  neighbours: readonly DecisionNeighbour[];
}

export function createAnomalyEvent(decision: AnomalyDecision): AnomalyEvent {
  const id = uuidv7();
  return {
    schema: EVENT_SCHEMA,
    id,
    type: 'anomaly',
    capturedAt: new Date(decision.capturedAt).toISOString(),
    decidedAt: new Date(decision.decidedAt ?? Date.now()).toISOString(),
    site: decision.site,
    line: decision.line,
    camera: decision.camera,
    score: decision.score,
    threshold: decision.threshold,
    label: decision.label,
    unknown: decision.unknown,
    neighbours: decision.neighbours.map(({ referenceId, label, distance }) => ({ referenceId, label, distance })),
    model: { name: decision.model.name, version: decision.model.version },
    frame: { seq: decision.frame.seq, origin: decision.frame.origin },
    image: { path: `/events/${id}/image` },
  };
}
