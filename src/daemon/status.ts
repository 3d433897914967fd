import type { CameraStatus } from '../capture/index.js';
import type { RecorderStatus } from '../events/index.js';
import type { ClassifierOverrides, ClassifierSettings } from '../knn/index.js';
import type { LearningStatus } from '../learning/index.js';
import type { ModelsStatus } from '../models/index.js';
import type { SessionStatus } from '../mqtt/index.js';
import type { CameraCounters, PipelineCounters } from '../pipeline/index.js';
import type { CameraEntryStatus } from './cameras.js';
import type { EdgeNodeStatus } from '../sparkplug/index.js';
import type { FleetSyncStatus } from '../sync/index.js';

export interface MqttStatus extends SessionStatus {
  /** Events in the outbox, not yet acknowledged by the broker. */
  backlog: number;
  /** Events acknowledged (PUBACK) since this connection setup started. */
  delivered: number;
  lastPubackAt: string | null;
  commands: { answered: number; dropped: number } | null;
}

/** What /status, `linewatch status`, the metrics, the health check and the stats message read. */
export interface DaemonStatus {
  state: 'starting' | 'running' | 'stopping' | 'stopped';
  startedAt: string;
  site: string;
  line: string;
  /** The camera's name; with several cameras, their names, comma-separated. */
  camera: string;
  /** Problems a user should act on, in words; empty while all is well. */
  problems: string[];
  /** The (first) camera's capture; `cameras` has every camera's. */
  capture: CameraStatus;
  /** Each camera, in configuration order: topic levels, ROI, capture and the counts of its frames' decisions. */
  cameras: CameraEntryStatus<CameraCounters>[];
  model: { name: string; version: string; precision: string; provider: string };
  models: ModelsStatus;
  references: {
    total: number;
    searchable: number;
    byLabel: Record<string, number>;
    bySource: Record<string, number>;
    /** `{ human: { good: 40 }, auto: { good: 12 } }` */
    bySourceAndLabel: Record<string, Record<string, number>>;
    index: string;
  };
  /** Self-training: on or off, and what it admitted, refused (by reason) and expired in the last hour. */
  learning: LearningStatus;
  classifier: ClassifierSettings & {
    /** Values set through the control API: they win over the config file (classifier.set with null clears one). */
    overrides: ClassifierOverrides;
  };
  /** `problem`: why frames are not being decided right now (no references, inference failing...), or null. */
  decisions: Omit<PipelineCounters, 'anomaliesByLabel'> & { anomaliesByLabel: Record<string, number>; problem: string | null };
  /**
   * `refusing`: why new anomaly events are refused right now (outbox or disk full), or null;
   * `mqtt`: the JSON session (null in profile sparkplug); `sparkplug`: the edge node (null in profile json).
   */
  events: { backlog: number; refused: number; refusing: string | null; mqtt: MqttStatus | null; sparkplug: EdgeNodeStatus | null; images: RecorderStatus['images'] };
  /** Fleet sync of references (null while `sync.enabled` is off or MQTT is). */
  sync: FleetSyncStatus | null;
}
