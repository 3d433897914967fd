import { UserError } from '../common/index.js';
import { checkRoi, explainFailure, ImageError, imageLimitDefaults, open, type ImageLimits, type Roi } from './image.js';

/** What the model wants; the manifest's `input` object fits this shape. */
export interface TensorSpec {
  width: number;
  height: number;
  colour: 'gray' | 'rgb';
  /** One per channel, applied to pixel/255. */
  mean: readonly number[];
  std: readonly number[];
}

/**
 * Encoded image -> normalised CHW float32 tensor, written into a buffer the caller reuses.
 * One sharp pipeline per image (crop, resize, drop alpha, raw bytes), then one pass in JS.
 */
export class Preprocessor {
  /** Floats per frame: channels * height * width. */
  readonly length: number;
  private readonly channels: 1 | 3;
  private readonly plane: number;
  /** normalised value of every byte value, per channel: lut[c * 256 + byte]. */
  private readonly lut: Float32Array;

  constructor(
    readonly spec: TensorSpec,
    readonly roi?: Roi,
    readonly limits: ImageLimits = imageLimitDefaults,
  ) {
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
  }

  /** A tensor buffer of the right length, to allocate once and reuse for every frame. */
  createTensor(): Float32Array {
    return new Float32Array(this.length);
  }

  /** Decode `image`, cropped to `roi` (a camera's own, else this preprocessor's), and write its tensor into `out` (length `this.length`). */
  async toTensor(image: Buffer, out: Float32Array, roi: Roi | undefined = this.roi): Promise<void> {
    if (out.length !== this.length) {
      throw new Error(`tensor buffer holds ${out.length} floats, the model input needs ${this.length}`);
    }
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
        // ITU-R 601-2 luma with the integer rounding of Pillow's convert('L'), so colour frames
        // turn gray exactly as in a Python training pipeline (libvips' own b-w is linear-light).
        for (let i = 0, p = 0; i < plane; i++, p += 3) {
          out[i] = lut[(data[p]! * 19595 + data[p + 1]! * 38470 + data[p + 2]! * 7471 + 0x8000) >> 16]!;
        }
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
