import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { labelSchema } from '../common/label-schema.js';

/**
 * The whole configuration, every key with its default. docs/configuration.md documents each key;
 * keep the two in step. Objects are strict so a misspelt key is reported instead of ignored.
 */
const section = <T extends z.ZodRawShape>(shape: T) => {
  const object = z.strictObject(shape);
  // Every key of a section has a default, so an absent section is an empty one.
  return object.prefault({} as z.input<typeof object>);
};

/*
 * Every number has a lower and an upper bound, and every string that reaches a file system call or
 * a protocol a length limit: a value past them is a typo or an attack, and would otherwise show up
 * later as a crash, a hung start-up or a timer that overflows (Node fires a timer of more than
 * 2^31-1 ms at once). The bounds are wide enough for any plant; docs/configuration.md lists them.
 * One message per key names the whole allowed range, so the fix is plain whatever was wrong.
 */
const int = (min: number, max: number) => {
  const error = `a whole number from ${min} to ${max}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
};
const decimal = (min: number, max: number) => {
  const error = `a number from ${min} to ${max}`;
  return z.number({ error }).min(min, { error }).max(max, { error });
};
const MIB = 1024 * 1024;

/** Text without control characters, up to `max` characters. */
const text = (max: number) => z.string().max(max, `at most ${max} characters`).regex(/^[^\u0000-\u001f\u007f]*$/, 'no control characters');
/** A file or folder path: what the OS allows (no NUL, within PATH_MAX). */
const path = text(4096).min(1, 'a path');
const name = z
  .string()
  .max(64, 'at most 64 characters (it becomes an MQTT topic level)')
  .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, dot, dash or underscore (it becomes an MQTT topic level)');
const brokerUrl = 'a URL such as mqtt://host:1883 or mqtts://host:8883';
const side = int(1, 16384);
const fps = int(1, 1000);
/** A replay's highest rate (frames per second). */
export const replayFpsMax = 10_000;

const roi = z.strictObject({
  x: int(0, 65535),
  y: int(0, 65535),
  width: int(1, 65535),
  height: int(1, 65535),
});

/** A camera's frame source and its queue: the top-level `capture` section, and each camera's in `cameras`. */
const capture = section({
  source: z.enum(['replay', 'gstreamer', 'libcamera']).default('replay'),
  /**
   * gstreamer: `raw` has the pipeline crop the ROI, scale it to the model input and hand over
   * raw pixels (no JPEG encode and decode per frame); `jpeg` sends JPEG frames; `auto` is raw
   * for the presets linewatch builds and jpeg for a custom pipeline. libcamera always sends MJPEG.
   */
  frames: z.enum(['auto', 'raw', 'jpeg']).default('auto'),
  /** Frames waiting for the pipeline; beyond it the oldest are dropped (and counted). */
  queueSize: int(1, 1000).default(32),
  stallTimeoutMs: int(100, 3_600_000).default(5000),
  restartInitialMs: int(10, 600_000).default(1000),
  restartMaxMs: int(10, 3_600_000).default(30000),
  maxFrameBytes: int(1024, 256 * MIB).default(8 * MIB),
  /** Width x height of a frame or image; larger ones are refused before they are decoded (a small PNG can declare 16000x16000). */
  maxFramePixels: int(1, 1_000_000_000).default(50_000_000),
  replay: section({
    folder: path.default('/opt/linewatch/samples/line/frames'),
    /**
     * 0, or at least 0.01 so the wait between frames fits a timer. Past 1000 (frames under 1 ms
     * apart) the rate holds on average: the bench's half-rate run on a fast machine uses one.
     */
    fps: decimal(0, replayFpsMax).refine((v) => v === 0 || v >= 0.01, `0 (as fast as the pipeline takes them) or from 0.01 to ${replayFpsMax}`).default(10),
    loop: z.boolean().default(true),
  }),
  gstreamer: section({
    preset: z.enum(['usb', 'jetson-csi', 'test', 'custom']).default('usb'),
    device: text(4096).default('/dev/video0'),
    sensorId: int(0, 255).default(0),
    width: side.default(640),
    height: side.default(480),
    fps: fps.default(15),
    /** With preset `custom`: the pipeline up to (not including) the final sink; it must end in JPEG (or, with frames: raw, in raw video of width x height). */
    pipeline: text(16384).default(''),
  }),
  libcamera: section({
    width: side.default(640),
    height: side.default(480),
    fps: fps.default(15),
    extraArgs: z.array(text(4096)).max(256, 'at most 256 arguments').default([]),
  }),
});

/** One camera of several: its source, ROI and topic levels (site and line default to the top-level ones). */
const camera = z.strictObject({
  camera: name,
  site: name.nullable().default(null),
  line: name.nullable().default(null),
  capture,
  roi: roi.nullable().default(null),
});

export const configSchema = z.strictObject({
  site: name.default('site'),
  line: name.default('line'),
  camera: name.default('camera'),
  /**
   * Several cameras on one daemon, instead of the single camera of `camera`, `capture` and
   * `preprocess.roi`; null = that single camera (config/cameras.ts makes both forms one list).
   */
  cameras: z.array(camera).min(1, 'at least one camera (or remove cameras: and use camera, capture and preprocess.roi for one camera)').max(64, 'at most 64 cameras').nullable().default(null),
  /** Folder for the database (references, vectors, index, outbox). */
  stateDir: path.default('/var/lib/linewatch'),
  /** Model bundle folder (manifest.json + model.onnx). */
  model: path.default('/opt/linewatch/models/default-int8'),

  capture,

  preprocess: section({
    /** Region of interest cropped from each frame before resizing; null = whole frame. */
    roi: roi.nullable().default(null),
    /** Threads that decode large JPEG frames (640x480 and up); 0 = on the main thread; null = one per core. */
    threads: int(0, 64).nullable().default(null),
  }),

  inference: section({
    providers: z.array(z.enum(['tensorrt', 'cuda', 'cpu'])).min(1).default(['tensorrt', 'cuda', 'cpu']),
    threads: int(1, 256).default(2),
    workers: int(1, 32).default(1),
    maxBatch: int(1, 256).default(16),
    maxWaitMs: decimal(0, 1000).default(2),
  }),

  knn: section({
    /** null: use the model bundle's calibrated value. */
    k: int(1, 256).nullable().default(null),
    threshold: decimal(0, 1).nullable().default(null),
    unknownDistance: decimal(0, 2).nullable().default(null),
    goodLabel: labelSchema.nullable().default(null),
    exactBelow: int(1, 100_000_000).default(300),
    hnswM: int(2, 100).default(16),
    hnswEfConstruction: int(1, 4096).default(200),
    hnswEf: int(1, 4096).default(48),
  }),

  /** References enrolled at start when the store has none (label subfolders; `good` is good). */
  enroll: section({
    folder: path.nullable().default(null),
  }),

  /** Self-training: unmistakable decisions join the references as `auto` ones, within caps (docs/learning.md). */
  learning: section({
    enabled: z.boolean().default(false),
    /** The nearest references that must all have the frame's label (at least one of them human); independent of knn.k. */
    neighbours: int(1, 256).default(5),
    /** A label's radius: this percentile of its human references' distances to their nearest human reference of the label. */
    radiusPercentile: decimal(1, 100).default(90),
    /** Admitted only when the nearest reference is within this share of the label's radius. */
    radiusShare: decimal(0.001, 1).default(0.25),
    /** ...and the nearest reference of another label is at least this many times as far as the nearest one. */
    marginRatio: decimal(1, 100).default(2),
    /** Nearer to an existing reference than this share of the label's radius: a near-duplicate, skipped (a stopped
     * belt adds nothing). A share, not a distance: how far apart items lie differs from model to model. */
    duplicateShare: decimal(0, 1).default(0.01),
    /** A label needs this many human references before anything is admitted to it (its radius needs them). */
    minHumanReferences: int(2, 100_000).default(5),
    /** Admitted per label per hour at most. */
    perLabelPerHour: int(0, 1_000_000).default(30),
    /** Automatic references per label at most (and per label from peers, with fleet sync). */
    perLabelTotal: int(0, 10_000_000).default(500),
    /** Share of a label's references that may be automatic: its own and its peers' together. */
    maxAutoShare: decimal(0, 1).default(0.8),
    /** An automatic reference not confirmed within this many hours is removed. */
    expireAfterH: decimal(0.01, 24 * 365).default(24),
  }),

  mqtt: section({
    enabled: z.boolean().default(true),
    /** What linewatch speaks: its own JSON topics, Sparkplug B 3.0 (SCADA), or both. */
    profile: z.enum(['json', 'sparkplug', 'both']).default('json'),
    // Parsed here, not first at connect: a port past 65535 or a broken host is a config error.
    url: text(2048).regex(/^(mqtts?|wss?|tcp|ssl):\/\//, brokerUrl).refine((url) => URL.canParse(url), brokerUrl).default('mqtt://localhost:1883'),
    /** MQTT strings hold at most 65535 bytes: 8192 characters fit whatever their UTF-8 length. */
    username: z.string().max(8192, 'at most 8192 characters').nullable().default(null),
    password: z.string().max(8192, 'at most 8192 characters').nullable().default(null),
    /** null: linewatch-<site>-<line>-<camera>, stable so the broker keeps the session. */
    clientId: text(256).min(1, 'a client id, or null for the default').nullable().default(null),
    /** null: linewatch/<site>/<line>/<camera>/ */
    topicRoot: text(1024)
      .min(1, 'a topic root, or null for the default')
      .regex(/^[^+#]*$/, 'no MQTT wildcards ("+" or "#"): it is where topics are published')
      .nullable()
      .default(null),
    /** The keepalive is a 16-bit field of the MQTT CONNECT packet. */
    keepaliveS: int(1, 65535).default(30),
    statsIntervalS: int(1, 86_400).default(60),
    caFile: path.nullable().default(null),
    certFile: path.nullable().default(null),
    keyFile: path.nullable().default(null),
    /** Events kept for the broker at most; past it new events are refused loudly, never old ones dropped. */
    outboxLimit: int(1, 100_000_000).default(1_000_000),
    /** On stop, how long to keep delivering the outbox; must fit in the unit's TimeoutStopSec (30 s). */
    flushTimeoutS: decimal(0, 600).default(10),
  }),

  /** Technicians' model updates: signing, the accuracy gate, rollback. */
  models: section({
    /** Folder of trusted ed25519 public keys (`*.pub`, PEM); a pushed bundle must be signed by one of them. */
    trustedKeysDir: path.default('/etc/linewatch/trusted-keys'),
    /** Development only: accept pushed bundles that carry no signature. */
    allowUnsigned: z.boolean().default(false),
    /** Refuse a new model whose leave-one-out F1 or AUROC is below the active model's by more than this. */
    gateTolerance: decimal(0, 1).default(0.02),
    /** A labeled folder (one subfolder per label) both models are also judged on before a swap; null = references only. */
    holdoutFolder: path.nullable().default(null),
    /** After a swap, roll back by itself if the new model fails (inference errors, health) within this many seconds. */
    rollbackWindowS: int(0, 86_400).default(120),
    /** Watch `<stateDir>/inbox` for bundle archives (.tar, .tar.gz) dropped by hand. */
    watchInbox: z.boolean().default(true),
    /** Model versions kept on disk (the active one, the previous one for rollback, older ones). */
    keep: int(2, 100).default(3),
  }),

  /** Images of anomalies, kept so a technician can see and label them. */
  images: section({
    /** Longest side of a stored anomaly image (the ROI crop), in pixels; never enlarged. */
    longestSide: int(16, 4096).default(256),
    /** Retention: images beyond any of these limits are removed, oldest first; the events stay. */
    maxCount: int(1, 100_000_000).default(200_000),
    maxBytes: int(MIB, 16 * 1024 ** 4).default(4 * 1024 ** 3),
    maxAgeDays: int(1, 3650).default(90),
  }),

  /** Commands in: the control API over HTTP and MQTT. */
  control: section({
    /** Bearer token for HTTP writes; null = `<stateDir>/control-token`, made at first start (mode 0600). */
    tokenFile: path.nullable().default(null),
    /** MQTT commands on `<topicRoot>cmd/<name>`. */
    mqtt: z.boolean().default(true),
    /** A command larger than this is answered with an error, not parsed. */
    /** At most 512 MiB: a JSON text longer than V8's longest string could not be parsed anyway. */
    maxPayloadBytes: int(1024, 512 * MIB).default(16 * MIB),
  }),

  /** The Sparkplug B edge node (mqtt.profile sparkplug or both). */
  sparkplug: section({
    /** Sparkplug group id; null = site. */
    groupId: name.nullable().default(null),
    /** Edge node id; null = line. Each camera is a device of it. */
    edgeNodeId: name.nullable().default(null),
    /** Primary host application id: data is held while its STATE is offline; null = none. */
    primaryHostId: name.nullable().default(null),
    /** How often metrics are checked for a change (DDATA reports by exception). */
    reportIntervalMs: int(10, 60_000).default(1000),
  }),

  /** Fleet sync: devices of a site share their references over MQTT (docs/operations.md, "Fleet sync"). */
  sync: section({
    enabled: z.boolean().default(false),
    /** This device in the fleet topics; null = its MQTT client id. The broker's ACL lets it publish only under this id. */
    deviceId: name.nullable().default(null),
    /** Sites besides its own whose references it imports. */
    trustedSites: z.array(name).max(1000).default([]),
    /** Which of its own references it shares; [] imports only. */
    share: z.array(z.enum(['human', 'auto'])).default(['human', 'auto']),
    /** Peer references kept at most; past it new ones are refused (and counted). */
    maxPeerReferences: int(0, 10_000_000).default(10_000),
    /** A fleet message larger than this is refused unread. */
    maxMessageBytes: int(1024, 16 * MIB).default(256 * 1024),
    /** How long the broker keeps a deleted reference's tombstone; a device away longer keeps that reference. */
    tombstoneDays: int(1, 3650).default(90),
  }),

  http: section({
    enabled: z.boolean().default(true),
    host: text(253).default('127.0.0.1'),
    port: int(0, 65535).default(8787),
  }),

  /** The technician web UI, served by the HTTP server (docs/ui/README.md). */
  ui: section({
    enabled: z.boolean().default(true),
    /** A session not used for this long needs a new login. */
    sessionIdleMinutes: int(1, 30 * 24 * 60).default(12 * 60),
    /** Failed logins per client address (and per account) per minute; more are refused for the rest of that minute. */
    loginAttemptsPerMinute: int(1, 1000).default(5),
  }),

  log: section({
    level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    /** auto: readable text on a terminal, JSON lines otherwise (journald). */
    format: z.enum(['auto', 'json', 'text']).default('auto'),
  }),
});

export type Config = z.output<typeof configSchema>;

/** preprocess.threads, with null resolved: one per core. */
export function decodeThreads(config: Config): number {
  return config.preprocess.threads ?? availableParallelism();
}
