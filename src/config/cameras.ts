import { ConfigError } from './error.js';
import type { Config } from './schema.js';

/** One camera as the daemon runs it: its topic levels, its frame source and its ROI. */
export interface CameraConfig {
  site: string;
  line: string;
  camera: string;
  capture: Config['capture'];
  roi: Config['preprocess']['roi'];
}

/** Topic names a camera of a list may not take: they are the device's own topics beside the cameras' (`linewatch/<site>/<line>/cmd/...`). */
const deviceTopics = new Set(['cmd', 'stats', 'available']);

/** A camera's topic levels as one name, `site/line/camera`: unique among the cameras, and the `camera` label of the metrics. */
export function cameraKey(levels: { site: string; line: string; camera: string }): string {
  return `${levels.site}/${levels.line}/${levels.camera}`;
}

/**
 * The cameras of a configuration, in one shape whichever form it uses: the single camera of
 * `site`/`line`/`camera`, `capture` and `preprocess.roi` is a list of one. Two cameras with the
 * same topic levels are refused: their events would be indistinguishable.
 */
export function configuredCameras(config: Config): CameraConfig[] {
  if (config.cameras === null) {
    return [{ site: config.site, line: config.line, camera: config.camera, capture: config.capture, roi: config.preprocess.roi }];
  }
  const cameras = config.cameras.map((c) => ({ site: c.site ?? config.site, line: c.line ?? config.line, camera: c.camera, capture: c.capture, roi: c.roi }));
  const seen = new Map<string, number>();
  cameras.forEach((c, i) => {
    const key = cameraKey(c);
    const first = seen.get(key);
    if (first !== undefined) {
      throw new ConfigError(
        `cameras.${first} and cameras.${i} are both ${key} (site/line/camera): their events would share one topic`,
        'give each camera its own camera name (or site/line)',
      );
    }
    seen.set(key, i);
    if (deviceTopics.has(c.camera)) {
      throw new ConfigError(`cameras.${i}.camera "${c.camera}" is the name of one of the device's own topics`, `name the camera something other than ${[...deviceTopics].join(', ')}`);
    }
    // Sparkplug names a device by its camera alone (the edge node is one line of one site).
    const named = cameras.findIndex((other) => other.camera === c.camera);
    if (config.mqtt.profile !== 'json' && named < i) {
      throw new ConfigError(
        `cameras.${named} and cameras.${i} are both named "${c.camera}": with mqtt.profile ${config.mqtt.profile} each camera is a Sparkplug device named by its camera`,
        'give each camera its own camera name',
      );
    }
  });
  return cameras;
}

/**
 * The largest frame any camera may deliver: the model's preprocessing refuses frames past it
 * (each camera's source holds its own frames to its own limit).
 */
export function frameLimits(config: Config): { maxBytes: number; maxPixels: number } {
  const captures = configuredCameras(config).map((c) => c.capture);
  return { maxBytes: Math.max(...captures.map((c) => c.maxFrameBytes)), maxPixels: Math.max(...captures.map((c) => c.maxFramePixels)) };
}
