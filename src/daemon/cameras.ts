import { Camera, FrameFanIn, type CameraIdentity, type CameraStatus, type FrameSourceOptions } from '../capture/index.js';
import { cameraKey, type CameraConfig } from '../config/index.js';

/** One camera in status: its topic levels, its ROI, its capture, and the pipeline's counts of its frames. */
export interface CameraEntryStatus<Decisions> {
  key: string;
  site: string;
  line: string;
  camera: string;
  roi: CameraIdentity['roi'];
  capture: CameraStatus;
  decisions: Decisions;
}

interface Entry {
  camera: Camera;
  config: CameraConfig;
}

/**
 * The daemon's cameras as one module: a Camera per configured camera, all feeding one pipeline
 * through a FrameFanIn, started, stopped and reconfigured together.
 */
export class Cameras {
  readonly feed = new FrameFanIn();
  /** In the configuration's order: the first camera is the one `status.capture` shows. */
  private entries: Entry[];

  /**
   * `input` is the model in force when the cameras start: a raw camera crops and scales to it. A
   * model of another size later still works (preprocess resizes), one resize more.
   */
  constructor(
    configs: CameraConfig[],
    private readonly input: ModelInput,
  ) {
    this.entries = configs.map((config) => this.open(config));
  }

  /** The frame sources' names, for the start-up log line. */
  get names(): string[] {
    return this.entries.map((e) => e.camera.name);
  }

  get first(): Camera {
    return this.entries[0]!.camera;
  }

  start(): Promise<unknown> {
    return Promise.all(this.entries.map((e) => e.camera.start()));
  }

  status<Decisions>(decisions: (key: string) => Decisions): CameraEntryStatus<Decisions>[] {
    return this.entries.map(({ camera }) => {
      const { key, site, line, camera: name, roi } = camera.identity;
      return { key, site, line, camera: name, roi, capture: camera.status(), decisions: decisions(key) };
    });
  }

  /**
   * Brings the cameras to `next`: changed ones get their new source (or only their new ROI),
   * added ones start, removed ones stop. All or nothing: when one cannot start, those already
   * changed or added are put back as they were and the reason is thrown. Returns the removed keys.
   */
  async apply(next: CameraConfig[]): Promise<string[]> {
    const current = new Map(this.entries.map((e) => [e.camera.identity.key, e]));
    // One camera before and after is the same camera, renamed at most: its source keeps running.
    const only = this.entries.length === 1 && next.length === 1 ? this.entries[0] : undefined;
    const undo: (() => Promise<unknown>)[] = [];
    const entries: Entry[] = [];
    try {
      for (const config of next) {
        const entry = current.get(cameraKey(config)) ?? only;
        if (!entry) {
          const added = this.open(config);
          undo.push(() => this.close(added));
          await added.camera.start();
          entries.push(added);
          continue;
        }
        const before = entry.config;
        // A raw camera crops in its pipeline, so a new ROI is a new source too.
        const source = sourceOptions(config, this.input);
        if (JSON.stringify(sourceOptions(before, this.input)) !== JSON.stringify(source)) {
          await entry.camera.replace(source);
          undo.push(() => entry.camera.replace(sourceOptions(before, this.input)));
        }
        entry.camera.identity = identity(config);
        entry.config = config;
        undo.push(async () => {
          entry.camera.identity = identity(before);
          entry.config = before;
        });
        entries.push(entry);
      }
    } catch (err) {
      for (const step of undo.reverse()) await step();
      throw err;
    }
    const kept = new Set(entries);
    const removed = this.entries.filter((e) => !kept.has(e));
    this.entries = entries;
    await Promise.all(removed.map((e) => this.close(e)));
    return removed.map((e) => e.camera.identity.key);
  }

  /** Resolves when every source ended by itself (play-once replays). */
  async ended(): Promise<void> {
    await Promise.all(this.entries.map((e) => e.camera.ended()));
  }

  /** Stops capture; frames already queued are still taken, then the feed ends. */
  async stop(): Promise<void> {
    await Promise.all(this.entries.map((e) => e.camera.stop()));
    this.feed.close();
  }

  private open(config: CameraConfig): Entry {
    const camera = new Camera(identity(config), sourceOptions(config, this.input), config.capture.queueSize);
    this.feed.add(camera.queue);
    return { camera, config };
  }

  private async close(entry: Entry): Promise<void> {
    this.feed.remove(entry.camera.queue);
    await entry.camera.stop();
  }
}

function identity(config: CameraConfig): CameraIdentity {
  return { key: cameraKey(config), site: config.site, line: config.line, camera: config.camera, roi: config.roi };
}

/** What a raw camera is set up for: the model input's size and colour. */
export interface ModelInput {
  width: number;
  height: number;
  colour: 'gray' | 'rgb';
}

function sourceOptions(camera: CameraConfig, input: ModelInput): FrameSourceOptions {
  const c = camera.capture;
  const supervision = {
    stallTimeoutMs: c.stallTimeoutMs,
    restartInitialMs: c.restartInitialMs,
    restartMaxMs: c.restartMaxMs,
    maxFrameBytes: c.maxFrameBytes,
  };
  switch (c.source) {
    case 'replay':
      return { kind: 'replay', folder: c.replay.folder, fps: c.replay.fps, loop: c.replay.loop, maxFrameBytes: c.maxFrameBytes };
    case 'gstreamer': {
      const g = c.gstreamer;
      return {
        kind: 'gstreamer',
        ...supervision,
        preset: g.preset === 'custom' ? 'pipeline' : g.preset,
        device: g.device,
        sensorId: g.sensorId,
        width: g.width,
        height: g.height,
        fps: g.fps,
        ...(g.preset === 'custom' ? { pipeline: g.pipeline } : {}),
        ...((c.frames === 'raw' || (c.frames === 'auto' && g.preset !== 'custom')) && {
          output: { width: input.width, height: input.height, colour: input.colour, ...(camera.roi && { roi: camera.roi }) },
        }),
      };
    }
    case 'libcamera':
      return { kind: 'libcamera', ...supervision, width: c.libcamera.width, height: c.libcamera.height, fps: c.libcamera.fps, extraArgs: c.libcamera.extraArgs };
  }
}
