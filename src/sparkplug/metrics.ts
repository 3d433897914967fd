import type { TypeStr, UMetric } from './payload.js';

/** What the metrics are read from: a structural subset of the daemon's status. */
export interface LineState {
  capture: { state: string; framesReceived: number; framesDropped: number; droppedWhileBusy: number };
  model: { name: string; version: string; provider: string };
  references: { total: number; byLabel: Record<string, number> };
  classifier: { k: number; threshold: number; unknownDistance: number };
  decisions: { good: number; anomalies: number };
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

/** The camera's metrics, apart from the event metrics. */
export function deviceSamples(line: LineState, last: LastDecision | null, framesPerSecond: number): Sample[] {
  return [
    { name: 'Decisions/Anomalies', type: 'Int64', value: line.decisions.anomalies },
    { name: 'Decisions/Good', type: 'Int64', value: line.decisions.good },
    { name: 'Decisions/Last Label', type: 'String', value: last?.label ?? null },
    { name: 'Decisions/Last Score', type: 'Double', value: last?.score ?? null },
    { name: 'Capture/Frames Per Second', type: 'Double', value: framesPerSecond },
    { name: 'Capture/Dropped Frames', type: 'Int64', value: line.capture.framesDropped + line.capture.droppedWhileBusy },
    { name: 'Capture/State', type: 'String', value: line.capture.state },
    { name: 'Classifier/Threshold', type: 'Double', value: line.classifier.threshold },
    { name: 'Classifier/K', type: 'Int32', value: line.classifier.k },
    { name: 'Classifier/Unknown Distance', type: 'Double', value: line.classifier.unknownDistance },
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
