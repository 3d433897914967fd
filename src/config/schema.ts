import { z } from 'zod';

/**
 * The whole configuration, every key with its default. docs/configuration.md documents each key;
 * keep the two in step. Objects are strict so a misspelt key is reported instead of ignored.
 */
const section = <T extends z.ZodRawShape>(shape: T) => {
  const object = z.strictObject(shape);
  // Every key of a section has a default, so an absent section is an empty one.
  return object.prefault({} as z.input<typeof object>);
};

const positiveInt = z.number().int().positive();
const nonNegative = z.number().nonnegative();
const name = z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, dot, dash or underscore (it becomes an MQTT topic level)');

const roi = z.strictObject({
  x: z.number().int().nonnegative(),
  y: z.number().int().nonnegative(),
  width: positiveInt,
  height: positiveInt,
});

export const configSchema = z.strictObject({
  site: name.default('site'),
  line: name.default('line'),
  camera: name.default('camera'),
  /** Folder for the database (references, vectors, index, outbox). */
  stateDir: z.string().min(1).default('/var/lib/linewatch'),
  /** Model bundle folder (manifest.json + model.onnx). */
  model: z.string().min(1).default('/opt/linewatch/models/default-int8'),

  capture: section({
    source: z.enum(['replay', 'gstreamer', 'libcamera']).default('replay'),
    /** Frames waiting for the pipeline; beyond it the oldest are dropped (and counted). */
    queueSize: positiveInt.default(32),
    stallTimeoutMs: positiveInt.default(5000),
    restartInitialMs: positiveInt.default(1000),
    restartMaxMs: positiveInt.default(30000),
    maxFrameBytes: positiveInt.default(8 * 1024 * 1024),
    /** Width x height of a frame or image; larger ones are refused before they are decoded (a small PNG can declare 16000x16000). */
    maxFramePixels: positiveInt.default(50_000_000),
    replay: section({
      folder: z.string().min(1).default('/opt/linewatch/samples/line/frames'),
      fps: nonNegative.default(10),
      loop: z.boolean().default(true),
    }),
    gstreamer: section({
      preset: z.enum(['usb', 'jetson-csi', 'test', 'custom']).default('usb'),
      device: z.string().default('/dev/video0'),
      sensorId: z.number().int().nonnegative().default(0),
      width: positiveInt.default(640),
      height: positiveInt.default(480),
      fps: positiveInt.default(15),
      /** With preset `custom`: the pipeline up to (not including) the final sink; it must end in JPEG. */
      pipeline: z.string().default(''),
    }),
    libcamera: section({
      width: positiveInt.default(640),
      height: positiveInt.default(480),
      fps: positiveInt.default(15),
      extraArgs: z.array(z.string()).default([]),
    }),
  }),

  preprocess: section({
    /** Region of interest cropped from each frame before resizing; null = whole frame. */
    roi: roi.nullable().default(null),
  }),

  inference: section({
    providers: z.array(z.enum(['tensorrt', 'cuda', 'cpu'])).min(1).default(['tensorrt', 'cuda', 'cpu']),
    threads: positiveInt.default(2),
    workers: positiveInt.default(1),
    maxBatch: positiveInt.default(16),
    maxWaitMs: nonNegative.default(2),
  }),

  knn: section({
    /** null: use the model bundle's calibrated value. */
    k: positiveInt.nullable().default(null),
    threshold: z.number().min(0).max(1).nullable().default(null),
    unknownDistance: z.number().min(0).max(2).nullable().default(null),
    goodLabel: z.string().min(1).nullable().default(null),
    exactBelow: positiveInt.default(300),
    hnswM: positiveInt.default(16),
    hnswEfConstruction: positiveInt.default(200),
    hnswEf: positiveInt.default(64),
  }),

  /** References enrolled at start when the store has none (label subfolders; `good` is good). */
  enroll: section({
    folder: z.string().nullable().default(null),
  }),

  mqtt: section({
    enabled: z.boolean().default(true),
    /** What linewatch speaks: its own JSON topics, Sparkplug B 3.0 (SCADA), or both. */
    profile: z.enum(['json', 'sparkplug', 'both']).default('json'),
    url: z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\//, 'a URL such as mqtt://host:1883 or mqtts://host:8883').default('mqtt://localhost:1883'),
    username: z.string().nullable().default(null),
    password: z.string().nullable().default(null),
    /** null: linewatch-<site>-<line>-<camera>, stable so the broker keeps the session. */
    clientId: z.string().nullable().default(null),
    /** null: linewatch/<site>/<line>/<camera>/ */
    topicRoot: z.string().nullable().default(null),
    keepaliveS: positiveInt.default(30),
    statsIntervalS: positiveInt.default(60),
    caFile: z.string().nullable().default(null),
    certFile: z.string().nullable().default(null),
    keyFile: z.string().nullable().default(null),
    /** Events kept for the broker at most; past it new events are refused loudly, never old ones dropped. */
    outboxLimit: positiveInt.default(1_000_000),
    /** On stop, how long to keep delivering the outbox; must fit in the unit's TimeoutStopSec (30 s). */
    flushTimeoutS: nonNegative.default(10),
  }),

  /** Technicians' model updates: signing, the accuracy gate, rollback. */
  models: section({
    /** Folder of trusted ed25519 public keys (`*.pub`, PEM); a pushed bundle must be signed by one of them. */
    trustedKeysDir: z.string().min(1).default('/etc/linewatch/trusted-keys'),
    /** Development only: accept pushed bundles that carry no signature. */
    allowUnsigned: z.boolean().default(false),
    /** Refuse a new model whose leave-one-out F1 or AUROC is below the active model's by more than this. */
    gateTolerance: z.number().min(0).max(1).default(0.02),
    /** A labeled folder (one subfolder per label) both models are also judged on before a swap; null = references only. */
    holdoutFolder: z.string().nullable().default(null),
    /** After a swap, roll back by itself if the new model fails (inference errors, health) within this many seconds. */
    rollbackWindowS: nonNegative.default(120),
    /** Watch `<stateDir>/inbox` for bundle archives (.tar, .tar.gz) dropped by hand. */
    watchInbox: z.boolean().default(true),
    /** Model versions kept on disk (the active one, the previous one for rollback, older ones). */
    keep: positiveInt.min(2).default(3),
  }),

  /** Images of anomalies, kept so a technician can see and label them. */
  images: section({
    /** Longest side of a stored anomaly image (the ROI crop), in pixels; never enlarged. */
    longestSide: positiveInt.default(256),
    /** Retention: images beyond any of these limits are removed, oldest first; the events stay. */
    maxCount: positiveInt.default(200_000),
    maxBytes: positiveInt.default(4 * 1024 ** 3),
    maxAgeDays: positiveInt.default(90),
  }),

  /** Commands in: the control API over HTTP and MQTT. */
  control: section({
    /** Bearer token for HTTP writes; null = `<stateDir>/control-token`, made at first start (mode 0600). */
    tokenFile: z.string().nullable().default(null),
    /** MQTT commands on `<topicRoot>cmd/<name>`. */
    mqtt: z.boolean().default(true),
    /** A command larger than this is answered with an error, not parsed. */
    maxPayloadBytes: positiveInt.default(16 * 1024 * 1024),
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
    reportIntervalMs: positiveInt.max(60_000).default(1000),
  }),

  http: section({
    enabled: z.boolean().default(true),
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8787),
  }),

  /** The technician web UI, served by the HTTP server (docs/ui/README.md). */
  ui: section({
    enabled: z.boolean().default(true),
    /** A session not used for this long needs a new login. */
    sessionIdleMinutes: positiveInt.default(12 * 60),
    /** Failed logins per client address (and per account) per minute; more are refused for the rest of that minute. */
    loginAttemptsPerMinute: positiveInt.default(5),
  }),

  log: section({
    level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    /** auto: readable text on a terminal, JSON lines otherwise (journald). */
    format: z.enum(['auto', 'json', 'text']).default('auto'),
  }),
});

export type Config = z.output<typeof configSchema>;
