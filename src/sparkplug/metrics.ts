import type { TypeStr, UMetric } from './payload.js';

/** One camera, a device of the edge node: what its metrics are read from. */
export interface CameraState {
  /** `site/line/camera`: the key of its frames and decisions. */
  key: string;
  /** The camera's name: its device id. */
  camera: string;
  capture: { state: string; framesReceived: number; framesDropped: number; droppedWhileBusy: number };
  decisions: { good: number; anomalies: number };
}

/** What the metrics are read from: a structural subset of the daemon's status. */
export interface LineState {
  /** In the configuration's order; each is a device. */
  cameras: CameraState[];
  model: { name: string; version: string; provider: string };
  references: { total: number; byLabel: Record<string, number> };
  classifier: { k: number; threshold: number; unknownDistance: number };
}

/** The last decided frame (any decision, good or anomaly). */
export interface LastDecision {
  label: string;
  score: number;
}

export type MetricValue = number | boolean | string | null;

export interface Sample {
  name: string;
  type: TypeStr;
  value: MetricValue;
}

export const BD_SEQ = 'bdSeq';
export const REBIRTH = 'Node Control/Rebirth';
export const REFERENCES_BY_LABEL = 'References/By Label/';

/** Device metrics a host may write with DCMD, and the `classifier.set` parameter each one sets. */
export const WRITABLE: Readonly<Record<string, { param: 'threshold' | 'k' | 'unknownDistance'; integer: boolean }>> = {
  'Classifier/Threshold': { param: 'threshold', integer: false },
  'Classifier/K': { param: 'k', integer: true },
  'Classifier/Unknown Distance': { param: 'unknownDistance', integer: false },
};

/** The metrics of one anomaly event, sent as DDATA from the outbox (null in DBIRTH: no event yet in this session). */
export const EVENT_ID = 'Event/Id';
export const EVENT_LABEL = 'Event/Label';
export const EVENT_SCORE = 'Event/Score';

/** Edge node metrics, apart from bdSeq and Node Control/Rebirth, which only the NBIRTH carries. */
export function nodeSamples(line: LineState, backlog: number): Sample[] {
  return [
    { name: 'Model/Name', type: 'String', value: line.model.name },
    { name: 'Model/Version', type: 'String', value: line.model.version },
    { name: 'Model/Execution Provider', type: 'String', value: line.model.provider },
    { name: 'References/Total', type: 'Int64', value: line.references.total },
    ...Object.keys(line.references.byLabel)
      .sort()
      .map((label): Sample => ({ name: REFERENCES_BY_LABEL + label, type: 'Int64', value: line.references.byLabel[label]! })),
    { name: 'Outbox/Backlog', type: 'Int64', value: backlog },
  ];
}

/** A camera's metrics, apart from the event metrics. The classifier is the line's: each device shows it, and a write to any one sets it. */
export function deviceSamples(camera: CameraState, classifier: LineState['classifier'], last: LastDecision | null, framesPerSecond: number): Sample[] {
  return [
    { name: 'Decisions/Anomalies', type: 'Int64', value: camera.decisions.anomalies },
    { name: 'Decisions/Good', type: 'Int64', value: camera.decisions.good },
    { name: 'Decisions/Last Label', type: 'String', value: last?.label ?? null },
    { name: 'Decisions/Last Score', type: 'Double', value: last?.score ?? null },
    { name: 'Capture/Frames Per Second', type: 'Double', value: framesPerSecond },
    { name: 'Capture/Dropped Frames', type: 'Int64', value: camera.capture.framesDropped + camera.capture.droppedWhileBusy },
    { name: 'Capture/State', type: 'String', value: camera.capture.state },
    { name: 'Classifier/Threshold', type: 'Double', value: classifier.threshold },
    { name: 'Classifier/K', type: 'Int32', value: classifier.k },
    { name: 'Classifier/Unknown Distance', type: 'Double', value: classifier.unknownDistance },
  ];
}

export const eventBirthSamples: readonly Sample[] = [
  { name: EVENT_ID, type: 'String', value: null },
  { name: EVENT_LABEL, type: 'String', value: null },
  { name: EVENT_SCORE, type: 'Double', value: null },
];

/** As a payload metric; a null value is sent as is_null (§6 "Metric"). */
export function toMetric(sample: Sample, timestamp: number): UMetric {
  return { name: sample.name, type: sample.type, value: sample.value, timestamp };
}

/**
 * The samples whose value differs from the last one reported, and the reported map brought up to
 * date: report by exception (§5 "Data Publish": DATA only when a metric changes).
 */
export function changed(samples: readonly Sample[], reported: Map<string, MetricValue>): Sample[] {
  const out = samples.filter((s) => reported.get(s.name) !== s.value);
  for (const s of out) reported.set(s.name, s.value);
  return out;
}
