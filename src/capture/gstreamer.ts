import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { UserError } from '../common/index.js';
import type { FrameSource } from './frame.js';
import type { RawLayout } from './raw-splitter.js';
import { SupervisedProcessSource, definedOnly, type ProcessCommand, type SupervisionOptions } from './supervisor.js';

export type GstreamerPreset = 'usb' | 'jetson-csi' | 'test' | 'pipeline';

export interface GstreamerOptions extends SupervisionOptions {
  kind: 'gstreamer';
  preset: GstreamerPreset;
  name?: string;
  width?: number;
  height?: number;
  fps?: number;
  /** jpegenc / nvjpegenc quality (0-100), when the pipeline encodes. */
  quality?: number;
  /** usb: V4L2 device. */
  device?: string;
  /** usb: 'auto' uses the camera's own MJPEG when it offers it at this size and rate, else raw + jpegenc. */
  format?: 'auto' | 'mjpeg' | 'raw';
  /** jetson-csi: nvarguscamerasrc sensor-id. */
  sensorId?: number;
  /** jetson-csi: nvvidconv flip-method (0-7). */
  flipMethod?: number;
  /** test: videotestsrc pattern. */
  pattern?: string;
  /**
   * pipeline: a gst-launch description ending in an element that outputs JPEG (or, with
   * `output`, raw video of width x height); `! fdsink fd=1` is appended.
   * Example: `v4l2src device=/dev/video2 ! image/jpeg ! jpegparse`.
   */
  pipeline?: string;
  /**
   * Raw frames instead of JPEG: the pipeline crops the ROI (videocrop; nvvidconv on a Jetson),
   * scales it to width x height and converts it to GRAY8 or RGB, so no frame is JPEG-encoded
   * and decoded again. Absent: JPEG frames, as an MJPEG camera sends them.
   */
  output?: RawOutput;
}

/** What the model takes: the camera delivers exactly this. */
export interface RawOutput {
  width: number;
  height: number;
  colour: 'gray' | 'rgb';
  /** In pixels of the camera's width x height; absent: the whole picture. */
  roi?: { x: number; y: number; width: number; height: number };
}

type Settings = Required<Omit<GstreamerOptions, keyof SupervisionOptions | 'pipeline' | 'name' | 'output'>>;

export const gstreamerDefaults: Omit<Settings, 'kind' | 'preset'> = {
  width: 640,
  height: 480,
  fps: 15,
  quality: 85,
  device: '/dev/video0',
  format: 'auto',
  sensorId: 0,
  flipMethod: 0,
  pattern: 'smpte',
};

const gstLaunch = 'gst-launch-1.0';

const installHint = 'install it, e.g. `sudo apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good`';
/** Probing whether a USB camera offers MJPEG must not hold up startup for long. */
const probeTimeoutMs = 5_000;

export function createGstreamerSource(options: GstreamerOptions): FrameSource {
  const settings: Settings = { ...gstreamerDefaults, ...definedOnly(options), kind: 'gstreamer', preset: options.preset };
  checkSettings(settings);
  const { preset } = settings;
  const output = options.output;
  if (output) checkOutput(output, settings);
  const name = options.name ?? `gstreamer-${preset}`;
  // Each preset's pipeline up to its camera's picture; then either the JPEG tail or the raw one.
  const finish = (head: string[], raw: string[] = []): ProcessCommand => gstCommand(output ? [...head, ...raw, ...rawTail(output, settings)] : head);
  let command: (signal: AbortSignal) => Promise<ProcessCommand>;
  switch (preset) {
    case 'usb':
      command = async (signal) => {
        const format = settings.format === 'auto' ? await probeMjpeg(settings, signal) : settings.format;
        return output ? finish(usbRawPipeline(settings, format)) : finish(usbPipeline(settings, format));
      };
      break;
    case 'jetson-csi': {
      // nvvidconv already crops, scales and converts in hardware: no software tail.
      const tokens = output ? jetsonRawPipeline(settings, output) : jetsonPipeline(settings);
      command = async () => gstCommand(tokens);
      break;
    }
    case 'test': {
      const tokens = output ? testRawPipeline(settings) : testPipeline(settings);
      command = async () => finish(tokens);
      break;
    }
    case 'pipeline': {
      const tokens = pipelineTokens(options.pipeline, output !== undefined);
      command = async () => finish(tokens);
      break;
    }
    default:
      throw new UserError(`unknown gstreamer preset "${String(preset)}"`, 'use one of: usb, jetson-csi, test, pipeline');
  }
  return new SupervisedProcessSource({
    name,
    kind: 'gstreamer',
    command,
    ...(output && { raw: rawLayout(output) }),
    installHint,
    failureHint: preset === 'jetson-csi' ? argusHint : undefined,
    supervision: options,
  });
}

/** gst-launch joins its arguments into one description; each token is one argv entry, no shell involved. */
function gstCommand(pipeline: string[]): ProcessCommand {
  return { file: gstLaunch, args: ['-q', ...pipeline, '!', 'fdsink', 'fd=1'] };
}

function caps(media: string, s: Settings): string {
  return `${media},width=${s.width},height=${s.height},framerate=${s.fps}/1`;
}

function usbPipeline(s: Settings, format: 'mjpeg' | 'raw'): string[] {
  const source = ['v4l2src', `device=${s.device}`];
  if (format === 'mjpeg') return [...source, '!', caps('image/jpeg', s)];
  return [...source, '!', caps('video/x-raw', s), '!', 'videoconvert', '!', 'jpegenc', `quality=${s.quality}`];
}

/** The camera's raw picture (decoded in GStreamer when the camera only offers MJPEG at this size). */
function usbRawPipeline(s: Settings, format: 'mjpeg' | 'raw'): string[] {
  const source = ['v4l2src', `device=${s.device}`];
  return format === 'mjpeg' ? [...source, '!', caps('image/jpeg', s), '!', 'jpegdec'] : [...source, '!', caps('video/x-raw', s)];
}

function testRawPipeline(s: Settings): string[] {
  return ['videotestsrc', 'is-live=true', `pattern=${s.pattern}`, '!', caps('video/x-raw', s)];
}

/** On a Jetson the VIC crops and scales in hardware (nvvidconv's left/right/top/bottom); it has GRAY8 but no packed RGB, so RGB goes through BGRx. */
function jetsonRawPipeline(s: Settings, o: RawOutput): string[] {
  const r = o.roi ?? { x: 0, y: 0, width: s.width, height: s.height };
  const crop = [`left=${r.x}`, `right=${r.x + r.width}`, `top=${r.y}`, `bottom=${r.y + r.height}`];
  const size = `width=${o.width},height=${o.height}`;
  const tail = o.colour === 'gray' ? [`video/x-raw,format=GRAY8,${size}`] : [`video/x-raw,format=BGRx,${size}`, '!', 'videoconvert', '!', `video/x-raw,format=RGB,${size}`];
  return ['nvarguscamerasrc', `sensor-id=${s.sensorId}`, '!', caps('video/x-raw(memory:NVMM)', s), '!', 'nvvidconv', `flip-method=${s.flipMethod}`, ...crop, '!', ...tail];
}

/**
 * Convert to the model's colour, crop to the ROI, scale to the model input (fit fill: no borders
 * added for the aspect ratio, as preprocess resizes), in software. The
 * multi-tap bilinear scaler widens its filter when it reduces, like Pillow's BILINEAR that the
 * model was trained with (the default 2-tap one would alias an 8x reduction).
 */
function rawTail(o: RawOutput, s: Settings): string[] {
  const r = o.roi;
  const crop = r ? ['!', 'videocrop', `left=${r.x}`, `top=${r.y}`, `right=${s.width - r.x - r.width}`, `bottom=${s.height - r.y - r.height}`] : [];
  const format = o.colour === 'gray' ? 'GRAY8' : 'RGB';
  return ['!', 'videoconvert', '!', `video/x-raw,format=${format}`, ...crop, '!', 'videoscale', 'method=bilinear2', 'add-borders=false', '!', `video/x-raw,width=${o.width},height=${o.height}`];
}

export function rawLayout(o: RawOutput): RawLayout {
  return { width: o.width, height: o.height, channels: o.colour === 'gray' ? 1 : 3, cropped: true };
}

function checkOutput(o: RawOutput, s: Settings): void {
  for (const key of ['width', 'height'] as const) {
    if (!Number.isInteger(o[key]) || o[key] <= 0) throw new UserError(`the raw frame ${key} must be a positive integer, got ${o[key]}`);
  }
  if (o.colour !== 'gray' && o.colour !== 'rgb') throw new UserError(`the raw frame colour must be gray or rgb, got "${String(o.colour)}"`);
  const r = o.roi;
  if (r && (r.x + r.width > s.width || r.y + r.height > s.height)) {
    throw new UserError(
      `roi { x: ${r.x}, y: ${r.y}, width: ${r.width}, height: ${r.height} } lies outside the camera's ${s.width}x${s.height} picture`,
      `keep x + width <= ${s.width} and y + height <= ${s.height} (capture.gstreamer.width/height), or remove the roi`,
    );
  }
}

function jetsonPipeline(s: Settings): string[] {
  return [
    'nvarguscamerasrc', `sensor-id=${s.sensorId}`,
    '!', caps('video/x-raw(memory:NVMM)', s),
    '!', 'nvvidconv', `flip-method=${s.flipMethod}`,
    '!', 'video/x-raw(memory:NVMM),format=I420',
    '!', 'nvjpegenc', `quality=${s.quality}`,
  ];
}

function testPipeline(s: Settings): string[] {
  return ['videotestsrc', 'is-live=true', `pattern=${s.pattern}`, '!', caps('video/x-raw', s), '!', 'jpegenc', `quality=${s.quality}`];
}

/** Splits a pipeline description at spaces outside double quotes, as gst-launch expects its argv. */
function pipelineTokens(pipeline: string | undefined, raw: boolean): string[] {
  const tokens: string[] = pipeline?.match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
  if (tokens.length === 0) {
    throw new UserError('the gstreamer "pipeline" preset needs a pipeline description', 'e.g. pipeline: "v4l2src device=/dev/video0 ! image/jpeg ! jpegparse"');
  }
  if (tokens.at(-1) === '!' || tokens.some((token) => /^\w*sink$/.test(token))) {
    throw new UserError(
      `the gstreamer pipeline must end in an element producing ${raw ? `raw video of the configured width x height` : 'JPEG'}, without a sink: ${pipeline}`,
      `linewatch appends ${raw ? '"! videoconvert ! videocrop ! videoscale ! ... ! fdsink fd=1"' : '"! fdsink fd=1"'} itself`,
    );
  }
  return tokens;
}

/** Does the camera deliver MJPEG at this size and rate? One short gst-launch run, not per frame. */
function probeMjpeg(s: Settings, signal: AbortSignal): Promise<'mjpeg' | 'raw'> {
  const args = ['-q', 'v4l2src', `device=${s.device}`, 'num-buffers=1', '!', caps('image/jpeg', s), '!', 'fakesink'];
  return new Promise((resolve, reject) => {
    execFile(gstLaunch, args, { signal, timeout: probeTimeoutMs }, (err) => {
      if (signal.aborted) reject(new Error('stopped'));
      else resolve(err ? 'raw' : 'mjpeg');
    });
  });
}

function argusHint(): string | undefined {
  return existsSync('/tmp/argus_socket') ? undefined : 'no /tmp/argus_socket: start the camera daemon with `sudo systemctl restart nvargus-daemon`';
}

/** Values end up inside a gst-launch description, so they must not be able to add elements or properties. */
function checkSettings(s: Settings): void {
  for (const key of ['width', 'height', 'fps'] as const) {
    if (!Number.isInteger(s[key]) || s[key] <= 0) throw new UserError(`gstreamer ${key} must be a positive integer, got ${s[key]}`);
  }
  if (!Number.isInteger(s.quality) || s.quality < 0 || s.quality > 100) throw new UserError(`gstreamer quality must be an integer 0-100, got ${s.quality}`);
  if (!Number.isInteger(s.sensorId) || s.sensorId < 0) throw new UserError(`gstreamer sensorId must be an integer >= 0, got ${s.sensorId}`);
  if (!Number.isInteger(s.flipMethod) || s.flipMethod < 0 || s.flipMethod > 7) throw new UserError(`gstreamer flipMethod must be an integer 0-7, got ${s.flipMethod}`);
  if (!/^\/dev\/[\w./:-]+$/.test(s.device)) {
    throw new UserError(`gstreamer device must be a /dev path, got "${s.device}"`, 'e.g. /dev/video0 or /dev/v4l/by-id/...; list cameras with `v4l2-ctl --list-devices`');
  }
  if (!/^[\w-]+$/.test(s.pattern)) throw new UserError(`gstreamer pattern must be a videotestsrc pattern name, got "${s.pattern}"`);
  if (!['auto', 'mjpeg', 'raw'].includes(s.format)) throw new UserError(`gstreamer format must be auto, mjpeg or raw, got "${s.format}"`);
}
