import type { Config } from '../config/index.js';

/** Keys (or key prefixes ending in '.') that a running daemon applies on SIGHUP. */
const liveKeys = ['site', 'line', 'camera', 'cameras', 'preprocess.roi', 'capture.', 'knn.k', 'knn.threshold', 'knn.unknownDistance', 'knn.goodLabel', 'learning.', 'mqtt.', 'log.'];
/** capture keys the model's preprocessing takes when it is loaded, not the frame source. */
const readAtModelLoad = new Set(['capture.maxFramePixels']);
/** mqtt keys read at each use: changing them needs no new broker connection. */
const mqttReadAtUse = new Set(['mqtt.outboxLimit', 'mqtt.flushTimeoutS']);

export interface ReloadPlan {
  /** Changed keys the daemon applies now. */
  changed: string[];
  /** Keys whose new value differs from the one the daemon started with and waits for a restart. */
  needRestart: string[];
  classifier: boolean;
  source: boolean;
  publisher: boolean;
  log: boolean;
}

export function isLiveKey(key: string): boolean {
  return !readAtModelLoad.has(key) && liveKeys.some((live) => (live.endsWith('.') ? key.startsWith(live) : key === live));
}

/** What a new configuration changes, compared with the one in force and the one the daemon started with. */
export function planReload(started: Config, current: Config, next: Config): ReloadPlan {
  const now = flatten(current);
  const wanted = flatten(next);
  const boot = flatten(started);
  const changed = [...wanted.keys()].filter((key) => isLiveKey(key) && wanted.get(key) !== now.get(key));
  const needRestart = [...wanted.keys()].filter((key) => !isLiveKey(key) && wanted.get(key) !== boot.get(key));
  const touched = (test: (key: string) => boolean) => changed.some(test);
  return {
    changed,
    needRestart,
    classifier: touched((k) => k.startsWith('knn.')),
    // The cameras' names and ROIs travel with their frames: a camera is reconfigured for any of them.
    source: touched((k) => k.startsWith('capture.') || ['site', 'line', 'camera', 'cameras', 'preprocess.roi'].includes(k)),
    // The list names the device's topics (and its Sparkplug device): the MQTT side is rebuilt for it.
    publisher: touched((k) => ['site', 'line', 'camera', 'cameras'].includes(k) || (k.startsWith('mqtt.') && !mqttReadAtUse.has(k))),
    log: touched((k) => k.startsWith('log.')),
  };
}

/** Leaf key path -> JSON of its value (arrays and the ROI object compare whole). */
function flatten(value: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (value && typeof value === 'object' && !Array.isArray(value) && !('x' in value && 'width' in value)) {
    for (const [key, child] of Object.entries(value)) flatten(child, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out.set(prefix, JSON.stringify(value));
  }
  return out;
}
