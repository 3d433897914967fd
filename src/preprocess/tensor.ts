import { isRawImage, UserError, type RawImage } from '../common/index.js';
import { checkEncoded, checkRoi, ImageError, imageLimitDefaults, roiOutside, type ImageLimits, type Roi } from './checks.js';
import { decodeJpeg, JpegDataError, type DctScale } from './jpeg.js';
import { lumaOf, resampleInto, type Box, type TensorLayout } from './resample.js';
import { DecodePool } from './pool.js';
import { readImageHeader, type ImageHeader } from './size.js';

/** What the model wants; the manifest's `input` object fits this shape. */
export interface TensorSpec {
  width: number;
  height: number;
  colour: 'gray' | 'rgb';
  /** One per channel, applied to pixel/255. */
  mean: readonly number[];
  std: readonly number[];
}

export interface PreprocessorOptions {
  /** 'sharp': every encoded image through sharp, as before the fast path (the bench's baseline). */
  decoder?: 'fast' | 'sharp';
  /** Threads that decode large JPEGs (preprocess.threads); 0 (the default) decodes all on the calling thread. */
  threads?: number;
}

/** What a decode thread needs to build the same Preprocessor. */
export interface DecodeSetup {
  spec: TensorSpec;
  limits: ImageLimits;
}

/**
 * JPEGs of at least this many pixels go to a decode thread. A frame answered alone (a message each
 * way, two wake-ups) costs about 0.15 ms more CPU than inline, so it pays only when its decode
 * costs more than that: measured inline to 28x28, 640x480 0.9 ms, 400x300 0.35 ms, 320x240
 * 0.25 ms, 112x112 0.1-0.17 ms (stays).
 */
export const decodeThreadPixels = 100_000;

/**
 * Image -> normalised CHW float32 tensor, written into a buffer the caller reuses.
 *
 * Raw pixels and baseline JPEGs take the fast path, in JS on the calling thread: the JPEG decoded
 * at the smallest DCT scale that still gives the ROI at least the model's size (only the luma
 * for a gray model), then the ROI cropped and resized with Pillow's BILINEAR filter. PNGs and
 * JPEGs the decoder does not handle (progressive, CMYK...) go through sharp (crop, lanczos3
 * resize), about 1.5 ms a call. The two agree within JPEG and resampling loss
 * (test/preprocess/fast-path.test.ts states how close). With `threads`, large JPEGs are decoded
 * by the same fast path in worker threads (several at once on several cores); close() ends them.
 */
export class Preprocessor {
  /** Floats per frame: channels * height * width. */
  readonly length: number;
  private readonly channels: 1 | 3;
  private readonly plane: number;
  /** normalised value of every byte value, per channel: lut[c * 256 + byte]. */
  private readonly lut: Float32Array;
  private readonly layout: TensorLayout;
  readonly decoder: 'fast' | 'sharp';
  readonly threads: number;
  private pool: DecodePool | undefined;

  constructor(
    readonly spec: TensorSpec,
    readonly roi?: Roi,
    readonly limits: ImageLimits = imageLimitDefaults,
    options: PreprocessorOptions = {},
  ) {
    this.decoder = options.decoder ?? 'fast';
    this.threads = options.threads ?? 0;
    if (!Number.isInteger(this.threads) || this.threads < 0) throw new UserError(`preprocess threads is ${this.threads}: it must be an integer >= 0`, 'fix preprocess.threads in the config (0 decodes on the main thread)');
    this.channels = spec.colour === 'gray' ? 1 : 3;
    if (spec.mean.length !== this.channels || spec.std.length !== this.channels) {
      throw new UserError(
        `colour '${spec.colour}' needs ${this.channels} mean and std values, got ${spec.mean.length} and ${spec.std.length}`,
        'give one mean and one std per channel',
      );
    }
    if (spec.std.some((s) => !(s > 0))) throw new UserError('every std value must be > 0', 'fix the std values');
    if (roi) checkRoi(roi);
    this.plane = spec.width * spec.height;
    this.length = this.channels * this.plane;
    this.lut = new Float32Array(256 * this.channels);
    for (let c = 0; c < this.channels; c++) {
      for (let v = 0; v < 256; v++) this.lut[c * 256 + v] = (v / 255 - spec.mean[c]!) / spec.std[c]!;
    }
    this.layout = {
      width: spec.width,
      height: spec.height,
      channels: this.channels,
      scale: Float32Array.from(spec.std.map((s) => 1 / (255 * s))),
      offset: Float32Array.from(spec.mean.map((m, c) => -m / spec.std[c]!)),
    };
  }

  /** A tensor buffer of the right length, to allocate once and reuse for every frame. */
  createTensor(): Float32Array {
    return new Float32Array(this.length);
  }

  /**
   * Decode `image` (encoded, or raw pixels from a camera), cropped to `roi` (a camera's own, else
   * this preprocessor's), and write its tensor into `out` (length `this.length`).
   */
  async toTensor(image: Buffer | RawImage, out: Float32Array, roi: Roi | undefined = this.roi): Promise<void> {
    if (out.length !== this.length) {
      throw new Error(`tensor buffer holds ${out.length} floats, the model input needs ${this.length}`);
    }
    if (isRawImage(image)) {
      this.fromRaw(image, out, roi);
      return;
    }
    checkEncoded(image, this.limits);
    if (this.decoder === 'fast') {
      const header = readImageHeader(image);
      if (this.threads > 0 && header?.type === 'image/jpeg' && header.width * header.height >= decodeThreadPixels) {
        this.pool ??= new DecodePool(this.threads, { spec: this.spec, limits: this.limits } satisfies DecodeSetup);
        const tensor = await this.pool.decode(image, roi);
        if (tensor) {
          out.set(tensor);
          return;
        }
      } else if (this.fromJpeg(image, header, out, roi)) {
        return;
      }
    }
    await this.fromSharp(image, out, roi);
  }

  /** Decode threads running (0 until the first large JPEG, and after close()). */
  get liveThreads(): number {
    return this.pool?.live ?? 0;
  }

  /** Ends the decode threads; a no-op for a preprocessor that never started one. */
  async close(): Promise<void> {
    await this.pool?.close();
  }

  private fromRaw(image: RawImage, out: Float32Array, roi: Roi | undefined): void {
    const { width, height, channels, stride, pixels } = image;
    if (width < 1 || height < 1 || stride < width * channels || pixels.length < stride * (height - 1) + width * channels) {
      throw new ImageError(`raw frame of ${pixels.length} bytes does not hold ${width}x${height} pixels of ${channels} channel(s), ${stride} bytes a row`);
    }
    resampleInto(image, image.cropped ? { x: 0, y: 0, width, height } : box(roi, width, height), this.layout, out);
  }

  /** The JS fast path (inline, or in a decode thread); false when it leaves the image to sharp. */
  fromJpeg(image: Buffer, header: ImageHeader | undefined, out: Float32Array, roi: Roi | undefined): boolean {
    if (header?.type !== 'image/jpeg') return false;
    if (header.width * header.height > this.limits.maxPixels) {
      throw new ImageError(`the image is ${header.width}x${header.height} pixels, more than capture.maxFramePixels (${this.limits.maxPixels})`);
    }
    const area = box(roi, header.width, header.height);
    let decoded;
    try {
      decoded = decodeJpeg(image, { gray: this.channels === 1, plan: () => this.plan(area) });
    } catch (err) {
      if (err instanceof JpegDataError) throw new ImageError(err.message, { cause: err });
      throw err;
    }
    if (!decoded) return false;
    const s = decoded.scale;
    resampleInto(decoded.image, { x: area.x / s, y: area.y / s, width: area.width / s, height: area.height / s }, this.layout, out);
    return true;
  }

  /**
   * The smallest decode that still gives the ROI at least the model's size (Pillow's `draft`
   * rule), and the rows down to the ROI's last plus what the resize filter reaches below it.
   */
  private plan(box: Box): { scale: DctScale; rows: number } {
    const scale = ([8, 4, 2] as const).find((s) => box.width / s >= this.spec.width && box.height / s >= this.spec.height) ?? 1;
    const reach = Math.ceil(Math.max(1, box.height / scale / this.spec.height) + 1) * scale;
    return { scale, rows: box.y + box.height + reach };
  }

  private async fromSharp(image: Buffer, out: Float32Array, roi: Roi | undefined): Promise<void> {
    // Loaded on first use: decode threads run this class without ever needing sharp.
    const { explainFailure, open } = await import('./image.js');
    let data: Buffer;
    let channels: number;
    try {
      const result = await open(image, roi, this.limits)
        .resize(this.spec.width, this.spec.height, { fit: 'fill' })
        .removeAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      data = result.data;
      channels = result.info.channels;
    } catch (err) {
      throw await explainFailure(err, image, roi, this.limits);
    }
    if (channels !== 1 && channels !== 3) {
      throw new ImageError(`${channels} colour channels (e.g. CMYK) are not supported`);
    }
    this.write(data, channels, out);
  }

  private write(data: Buffer, channels: number, out: Float32Array): void {
    const { lut, plane } = this;
    if (this.channels === 1) {
      if (channels === 1) {
        for (let i = 0; i < plane; i++) out[i] = lut[data[i]!]!;
      } else {
        for (let i = 0, p = 0; i < plane; i++, p += 3) out[i] = lut[lumaOf(data[p]!, data[p + 1]!, data[p + 2]!)]!;
      }
      return;
    }
    const g = plane;
    const b = 2 * plane;
    if (channels === 1) {
      for (let i = 0; i < plane; i++) {
        const v = data[i]!;
        out[i] = lut[v]!;
        out[g + i] = lut[256 + v]!;
        out[b + i] = lut[512 + v]!;
      }
    } else {
      for (let i = 0, p = 0; i < plane; i++, p += 3) {
        out[i] = lut[data[p]!]!;
        out[g + i] = lut[256 + data[p + 1]!]!;
        out[b + i] = lut[512 + data[p + 2]!]!;
      }
    }
  }
}

/** The ROI, or the whole image; a RoiError when it does not fit. */
function box(roi: Roi | undefined, width: number, height: number): Box {
  if (!roi) return { x: 0, y: 0, width, height };
  if (roi.x + roi.width > width || roi.y + roi.height > height) throw roiOutside(roi, width, height);
  return roi;
}
