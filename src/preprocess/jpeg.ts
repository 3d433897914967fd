/**
 * A baseline JPEG decoder with DCT scaling, for frame intake.
 *
 * sharp costs about 1.5 ms per call whatever the image (libvips pipeline set-up), which caps
 * intake near 600 frames/s on two cores. A model sees 28x28 to 224x224 pixels, so most of a
 * camera frame's detail is thrown away by the resize: decoding at 1/2, 1/4 or 1/8 of the size
 * (an N x N inverse DCT from the top-left N x N coefficients of each block, as libjpeg's scaled
 * decode and Pillow's `draft` do) skips most of the work, and a gray model needs only the Y
 * component's transforms. What this does not handle (progressive, arithmetic coding, 12-bit,
 * CMYK, scans holding part of the components) returns undefined: the caller uses sharp instead.
 */
import type { RawImage } from '../common/index.js';

/** Output pixels per source pixel along each axis: 1, 1/2, 1/4 or 1/8. */
export type DctScale = 1 | 2 | 4 | 8;

export interface JpegSize {
  width: number;
  height: number;
}

/** A frame the decoder cannot make sense of: corrupt or cut short. */
export class JpegDataError extends Error {}

const zigzag = new Uint8Array([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29,
  22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]);

/** Bits looked up at once; longer codes take the slow path (JPEG codes are at most 16 bits). */
const fastBits = 9;

interface HuffmanTable {
  /** (length << 8) | symbol for codes of at most fastBits, else 0. */
  fast: Uint16Array;
  /**
   * AC tables: an AC symbol and its value together, when both fit in fastBits (most coefficients
   * of a camera frame): value << 8 | run << 4 | bits used, else 0.
   */
  acFast: Int32Array;
  maxCode: Int32Array;
  valPtr: Int32Array;
  minCode: Int32Array;
  symbols: Uint8Array;
}

interface Component {
  id: number;
  h: number;
  v: number;
  quant: number;
  dc: number;
  ac: number;
  blocksPerLine: number;
  blocksPerColumn: number;
  /** Output pixels of this component at the chosen scale. */
  plane: Uint8Array;
  planeWidth: number;
  /** Decode its blocks into pixels (a gray output skips the chroma transforms). */
  wanted: boolean;
}

/** A camera sends the same tables with every frame: built once, not per frame. */
const huffmanCache = new Map<string, HuffmanTable>();
const huffmanCacheSize = 64;

function cachedHuffman(counts: Uint8Array, symbols: Uint8Array): HuffmanTable {
  const key = String.fromCharCode(...counts, ...symbols);
  let table = huffmanCache.get(key);
  if (!table) {
    if (huffmanCache.size >= huffmanCacheSize) huffmanCache.clear();
    table = buildHuffman(counts, symbols);
    huffmanCache.set(key, table);
  }
  return table;
}

function buildHuffman(counts: Uint8Array, symbols: Uint8Array): HuffmanTable {
  const fast = new Uint16Array(1 << fastBits);
  const maxCode = new Int32Array(18).fill(-1);
  const valPtr = new Int32Array(17);
  const minCode = new Int32Array(17);
  let code = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    const n = counts[len - 1]!;
    valPtr[len] = k;
    minCode[len] = code;
    for (let i = 0; i < n; i++, k++, code++) {
      if (len <= fastBits) {
        const shift = fastBits - len;
        const entry = (len << 8) | symbols[k]!;
        for (let j = code << shift, end = (code + 1) << shift; j < end; j++) fast[j] = entry;
      }
    }
    maxCode[len] = n > 0 ? code - 1 : -1;
    code <<= 1;
  }
  maxCode[17] = 0x7fffffff;
  const acFast = new Int32Array(1 << fastBits);
  for (let i = 0; i < acFast.length; i++) {
    const entry = fast[i]!;
    const length = entry >> 8;
    const size = entry & 15;
    if (entry === 0 || size === 0 || length + size > fastBits) continue;
    const raw = (i >> (fastBits - length - size)) & ((1 << size) - 1);
    const value = raw < 1 << (size - 1) ? raw - (1 << size) + 1 : raw;
    acFast[i] = (value << 8) | (entry & 0xf0) | (length + size);
  }
  return { fast, acFast, maxCode, valPtr, minCode, symbols };
}

/** cos table of the N-point inverse DCT: t[x * 8 + u] = C(u)/2 cos((2x+1) u pi / 2N); two passes give C(u)C(v)/4 as in the JPEG IDCT. */
function idctTable(n: number): Float32Array {
  const t = new Float32Array(64);
  for (let x = 0; x < n; x++) {
    for (let u = 0; u < n; u++) t[x * 8 + u] = (u === 0 ? Math.SQRT1_2 : 1) * 0.5 * Math.cos(((2 * x + 1) * u * Math.PI) / (2 * n));
  }
  return t;
}
const idctTables = new Map<number, Float32Array>([1, 2, 4, 8].map((n) => [n, idctTable(n)]));

/** Which zigzag positions an N x N scaled transform reads. */
function neededMask(n: number): Uint8Array {
  const mask = new Uint8Array(64);
  for (let k = 0; k < 64; k++) {
    const p = zigzag[k]!;
    mask[k] = (p >> 3) < n && (p & 7) < n ? 1 : 0;
  }
  return mask;
}
const neededMasks = new Map<number, Uint8Array>([1, 2, 4, 8].map((n) => [n, neededMask(n)]));

export interface JpegDecodeOptions {
  /** Gray output: only the Y component (the JFIF luma) is transformed. */
  gray: boolean;
  /**
   * Picks the scale once the frame's size is known, and the rows (of the full-size frame) that
   * are needed: decoding stops after the MCU row that holds the last of them.
   */
  plan(size: JpegSize): { scale: DctScale; rows: number };
}

export interface DecodedJpeg {
  image: RawImage;
  /** The image is the frame's size divided by this, rounded up. */
  scale: DctScale;
}

/**
 * Decodes a baseline (or extended Huffman, 8-bit) JPEG at 1/scale of its size. Undefined for
 * what it does not handle; throws JpegDataError for a corrupt or truncated frame.
 */
export function decodeJpeg(data: Uint8Array, options: JpegDecodeOptions): DecodedJpeg | undefined {
  if (data.length < 4 || data[0] !== 0xff || data[1] !== 0xd8) throw new JpegDataError('no JPEG start marker');
  const quant: (Int32Array | undefined)[] = [];
  const dcTables: (HuffmanTable | undefined)[] = [];
  const acTables: (HuffmanTable | undefined)[] = [];
  let frame: { width: number; height: number; components: Component[]; hMax: number; vMax: number } | undefined;
  let restartInterval = 0;
  let adobeTransform = -1;
  let at = 2;
  const u16 = (p: number) => (data[p]! << 8) | data[p + 1]!;
  for (;;) {
    if (at + 4 > data.length) throw new JpegDataError('the frame ends before its image data');
    if (data[at] !== 0xff) throw new JpegDataError(`no marker at byte ${at}`);
    const marker = data[at + 1]!;
    if (marker === 0xff) {
      at++;
      continue;
    }
    if (marker === 0xd9) throw new JpegDataError('the frame ends before its image data');
    const length = u16(at + 2);
    const body = at + 4;
    const end = at + 2 + length;
    if (length < 2 || end > data.length) throw new JpegDataError('a marker segment runs past the end of the frame');
    switch (marker) {
      case 0xdb: // DQT
        for (let p = body; p < end; ) {
          const sixteen = data[p]! >> 4;
          const id = data[p]! & 15;
          p++;
          const table = new Int32Array(64);
          for (let k = 0; k < 64; k++) {
            table[k] = sixteen ? u16(p + 2 * k) : data[p + k]!;
          }
          p += sixteen ? 128 : 64;
          if (id > 3 || p > end) throw new JpegDataError('bad quantisation table');
          quant[id] = table; // kept in zigzag order, as the coefficients arrive
        }
        break;
      case 0xc4: // DHT
        for (let p = body; p < end; ) {
          const cls = data[p]! >> 4;
          const id = data[p]! & 15;
          const counts = data.subarray(p + 1, p + 17);
          let total = 0;
          for (const c of counts) total += c;
          const symbols = data.subarray(p + 17, p + 17 + total);
          p += 17 + total;
          if (id > 3 || cls > 1 || p > end || total > 256) throw new JpegDataError('bad Huffman table');
          (cls === 0 ? dcTables : acTables)[id] = cachedHuffman(counts, symbols);
        }
        break;
      case 0xdd: // DRI
        restartInterval = u16(body);
        break;
      case 0xee: // APP14 Adobe: its transform byte says whether 3 components are YCbCr (1) or RGB (0)
        if (length >= 14 && String.fromCharCode(...data.subarray(body, body + 5)) === 'Adobe') adobeTransform = data[body + 11]!;
        break;
      case 0xc0:
      case 0xc1: {
        // The size limits were checked on the first frame header: a second one could declare anything.
        if (frame) throw new JpegDataError('more than one frame header');
        if (data[body] !== 8) return undefined; // 12-bit
        const height = u16(body + 1);
        const width = u16(body + 3);
        const count = data[body + 5]!;
        if (width === 0 || height === 0) return undefined; // height from a DNL marker
        if (count !== 1 && count !== 3) return undefined; // CMYK / YCCK
        const components: Component[] = [];
        for (let i = 0; i < count; i++) {
          const p = body + 6 + i * 3;
          const h = data[p + 1]! >> 4;
          const v = data[p + 1]! & 15;
          if (h < 1 || h > 2 || v < 1 || v > 2) return undefined;
          components.push({ id: data[p]!, h, v, quant: data[p + 2]!, dc: 0, ac: 0, blocksPerLine: 0, blocksPerColumn: 0, plane: new Uint8Array(0), planeWidth: 0, wanted: true });
        }
        let hMax = 1;
        let vMax = 1;
        for (const c of components) {
          hMax = Math.max(hMax, c.h);
          vMax = Math.max(vMax, c.v);
        }
        frame = { width, height, components, hMax, vMax };
        break;
      }
      case 0xda: { // SOS
        if (!frame) throw new JpegDataError('image data before the frame header');
        const count = data[body]!;
        if (count !== frame.components.length) return undefined; // non-interleaved multi-scan baseline
        for (let i = 0; i < count; i++) {
          const c = frame.components.find((x) => x.id === data[body + 1 + i * 2]);
          if (!c) throw new JpegDataError('a scan names an unknown component');
          c.dc = data[body + 2 + i * 2]! >> 4;
          c.ac = data[body + 2 + i * 2]! & 15;
          if (!dcTables[c.dc] || !acTables[c.ac] || !quant[c.quant]) throw new JpegDataError('a scan uses a missing table');
        }
        const rgbComponents = frame.components.length === 3 && adobeTransform === 0;
        if (options.gray && rgbComponents) return undefined; // rare: luma would need all three planes
        return decodeScan(data, end, frame, quant as Int32Array[], dcTables as HuffmanTable[], acTables as HuffmanTable[], restartInterval, options, rgbComponents);
      }
      default:
        // SOF2 (progressive), SOF3 (lossless), SOF5-7 (hierarchical), SOF9-15 (arithmetic): sharp decodes them.
        if (marker >= 0xc2 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return undefined;
      // APPn, COM and the rest carry nothing the pixels need.
    }
    at = end;
  }
}

function decodeScan(
  data: Uint8Array,
  start: number,
  frame: { width: number; height: number; components: Component[]; hMax: number; vMax: number },
  quant: Int32Array[],
  dcTables: HuffmanTable[],
  acTables: HuffmanTable[],
  restartInterval: number,
  options: JpegDecodeOptions,
  rgbComponents: boolean,
): DecodedJpeg {
  const { width, height, components, hMax, vMax } = frame;
  const { scale, rows: rowsNeeded } = options.plan({ width, height });
  const n = 8 / scale;
  const table = idctTables.get(n)!;
  const single = components.length === 1;
  const mcusX = single ? Math.ceil(width / 8) : Math.ceil(width / (8 * hMax));
  const mcusY = single ? Math.ceil(height / 8) : Math.ceil(height / (8 * vMax));
  for (const c of components) {
    c.blocksPerLine = single ? mcusX : mcusX * c.h;
    c.blocksPerColumn = single ? mcusY : mcusY * c.v;
    c.wanted = !options.gray || c === components[0];
    c.planeWidth = c.blocksPerLine * n;
    c.plane = c.wanted ? new Uint8Array(c.planeWidth * c.blocksPerColumn * n) : c.plane;
  }

  const mask = neededMasks.get(n)!;
  const coefficients = new Float32Array(64);
  const rows = new Float32Array(64);
  const preds = new Int32Array(components.length);
  // The blocks of one MCU in scan order: component index, then its h x v blocks.
  const blocks: { index: number; dx: number; dy: number }[] = [];
  components.forEach((c, index) => {
    for (let dy = 0; dy < (single ? 1 : c.v); dy++) for (let dx = 0; dx < (single ? 1 : c.h); dx++) blocks.push({ index, dx, dy });
  });

  // The hot loop keeps the bit buffer in locals; the reader refills it (packed as bitBuf << 5 | bits).
  const reader = new EntropyReader(data, start);
  let bitBuf = 0;
  let bits = 0;
  const total = mcusX * Math.min(mcusY, Math.ceil(rowsNeeded / (single ? 8 : 8 * vMax)));
  for (let mcu = 0; mcu < total; mcu++) {
    if (restartInterval > 0 && mcu > 0 && mcu % restartInterval === 0) {
      reader.restart(bits);
      bitBuf = 0;
      bits = 0;
      preds.fill(0);
    }
    const mx = mcu % mcusX;
    const my = (mcu - mx) / mcusX;
    for (const { index, dx, dy } of blocks) {
      const c = components[index]!;
      const q = quant[c.quant]!;
      const dcTable = dcTables[c.dc]!;
      const acTable = acTables[c.ac]!;
      const wanted = c.wanted;
      // DC: a symbol (the size of the difference), then the difference.
      if (bits < 16) {
        const packed = reader.fill(bitBuf, bits);
        bitBuf = packed >>> 5;
        bits = packed & 31;
      }
      let entry = dcTable.fast[(bitBuf >> (bits - fastBits)) & fastMask]! || slowSymbol(dcTable, bitBuf, bits);
      bits -= entry >> 8;
      let size = entry & 255;
      if (size > 11) throw new JpegDataError('corrupt image data (DC difference too large)');
      if (size > 0) {
        if (bits < size) {
          const packed = reader.fill(bitBuf, bits);
          bitBuf = packed >>> 5;
          bits = packed & 31;
        }
        const raw = (bitBuf >> (bits - size)) & ((1 << size) - 1);
        bits -= size;
        preds[index] = preds[index]! + (raw < 1 << (size - 1) ? raw - (1 << size) + 1 : raw);
      }
      if (wanted) coefficients[0] = preds[index]! * q[0]!;
      let acSeen = false;
      for (let k = 1; k < 64; ) {
        if (bits < 16) {
          const packed = reader.fill(bitBuf, bits);
          bitBuf = packed >>> 5;
          bits = packed & 31;
        }
        const peek = (bitBuf >> (bits - fastBits)) & fastMask;
        const both = acTable.acFast[peek]!;
        if (both !== 0) {
          bits -= both & 15;
          k += (both >> 4) & 15;
          if (k > 63) throw new JpegDataError('corrupt image data (coefficient past the block)');
          if (wanted && mask[k]) {
            coefficients[zigzag[k]!] = (both >> 8) * q[k]!;
            acSeen = true;
          }
          k++;
          continue;
        }
        entry = acTable.fast[peek]! || slowSymbol(acTable, bitBuf, bits);
        bits -= entry >> 8;
        size = entry & 15;
        const run = (entry >> 4) & 15;
        if (size === 0) {
          if (run !== 15) break; // end of block
          k += 16;
          continue;
        }
        k += run;
        if (k > 63) throw new JpegDataError('corrupt image data (coefficient past the block)');
        if (bits < size) {
          const packed = reader.fill(bitBuf, bits);
          bitBuf = packed >>> 5;
          bits = packed & 31;
        }
        const raw = (bitBuf >> (bits - size)) & ((1 << size) - 1);
        bits -= size;
        if (wanted && mask[k]) {
          coefficients[zigzag[k]!] = (raw < 1 << (size - 1) ? raw - (1 << size) + 1 : raw) * q[k]!;
          acSeen = true;
        }
        k++;
      }
      if (wanted) {
        const bx = single ? mx : mx * c.h + dx;
        const by = single ? my : my * c.v + dy;
        writeBlock(c.plane, by * n * c.planeWidth + bx * n, c.planeWidth, n, table, coefficients, rows, acSeen);
      }
    }
  }
  reader.checkNotShort(bits);

  const outWidth = Math.ceil(width / scale);
  const outHeight = Math.ceil(height / scale);
  const y = components[0]!;
  if (options.gray || single) {
    return { image: { width: outWidth, height: outHeight, channels: 1, stride: y.planeWidth, pixels: y.plane, cropped: false }, scale };
  }
  return { image: toRgb(components, hMax, vMax, outWidth, outHeight, rgbComponents), scale };
}

/** Feeds entropy-coded bytes: FF00 is a data FF; any other marker ends the data, and zeros follow (counted, so a frame cut short is told from one that ends cleanly). */
class EntropyReader {
  private padded = 0;
  private atMarker = false;

  constructor(
    private readonly data: Uint8Array,
    private pos: number,
  ) {}

  /** Tops the buffer up to more than 16 bits; returns bitBuf << 5 | bits. */
  fill(bitBuf: number, bits: number): number {
    const data = this.data;
    while (bits <= 16) {
      let byte = 0;
      if (this.atMarker || this.pos >= data.length) {
        this.padded++;
      } else {
        byte = data[this.pos]!;
        if (byte !== 0xff) this.pos++;
        else if (data[this.pos + 1] === 0x00) this.pos += 2;
        else {
          this.atMarker = true;
          byte = 0;
          this.padded++;
        }
      }
      bitBuf = ((bitBuf << 8) | byte) & 0xffffff;
      bits += 8;
    }
    return (bitBuf << 5) | bits;
  }

  /** More bits were used than the data held: the frame was cut short. */
  checkNotShort(bitsLeft: number): void {
    if (this.padded * 8 > bitsLeft) throw new JpegDataError('the image data ends early (truncated frame)');
  }

  /** At a restart interval: the bits left are padding, and an RSTn marker must come next. */
  restart(bitsLeft: number): void {
    this.checkNotShort(bitsLeft);
    const data = this.data;
    if (!this.atMarker) while (this.pos < data.length && data[this.pos] !== 0xff) this.pos++;
    const code = data[this.pos + 1];
    if (code === undefined || code < 0xd0 || code > 0xd7) throw new JpegDataError('a restart marker is missing (corrupt frame)');
    this.pos += 2;
    this.atMarker = false;
    this.padded = 0;
  }
}

const fastMask = (1 << fastBits) - 1;

/** A code longer than fastBits: the canonical-code walk of the JPEG standard (F.2.2.3); returns length << 8 | symbol. */
function slowSymbol(t: HuffmanTable, bitBuf: number, bits: number): number {
  for (let len = fastBits + 1; len <= 16; len++) {
    const code = (bitBuf >> (bits - len)) & ((1 << len) - 1);
    if (code <= t.maxCode[len]!) return (len << 8) | t.symbols[t.valPtr[len]! + code - t.minCode[len]!]!;
  }
  throw new JpegDataError('corrupt image data (no Huffman code matches)');
}

/** The N x N inverse DCT of one block's dequantised coefficients into the plane; clears what it read. */
function writeBlock(plane: Uint8Array, origin: number, stride: number, n: number, table: Float32Array, coefficients: Float32Array, rows: Float32Array, acSeen: boolean): void {
  if (!acSeen) {
    const v = clamp(coefficients[0]! / 8 + 128);
    for (let y = 0, row = origin; y < n; y++, row += stride) for (let x = 0; x < n; x++) plane[row + x] = v;
    coefficients[0] = 0;
    return;
  }
  // Rows (over u) then columns (over v), each an N-point inverse DCT of the first N coefficients.
  for (let v = 0; v < n; v++) {
    for (let x = 0; x < n; x++) {
      let sum = 0;
      for (let u = 0; u < n; u++) sum += table[x * 8 + u]! * coefficients[v * 8 + u]!;
      rows[v * 8 + x] = sum;
    }
  }
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      let sum = 0;
      for (let v = 0; v < n; v++) sum += table[y * 8 + v]! * rows[v * 8 + x]!;
      plane[origin + y * stride + x] = clamp(sum + 128);
    }
  }
  for (let v = 0; v < n; v++) for (let u = 0; u < n; u++) coefficients[v * 8 + u] = 0;
}

/** Interleaves the planes (chroma repeated over its subsampling) and converts JFIF YCbCr to RGB. */
function toRgb(components: Component[], hMax: number, vMax: number, width: number, height: number, alreadyRgb: boolean): RawImage {
  const [a, b, c] = components as [Component, Component, Component];
  const pixels = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const rowA = ((y * a.v) / vMax | 0) * a.planeWidth;
    const rowB = ((y * b.v) / vMax | 0) * b.planeWidth;
    const rowC = ((y * c.v) / vMax | 0) * c.planeWidth;
    for (let x = 0, o = y * width * 3; x < width; x++, o += 3) {
      const p = a.plane[rowA + ((x * a.h) / hMax | 0)]!;
      const q = b.plane[rowB + ((x * b.h) / hMax | 0)]!;
      const r = c.plane[rowC + ((x * c.h) / hMax | 0)]!;
      if (alreadyRgb) {
        pixels[o] = p;
        pixels[o + 1] = q;
        pixels[o + 2] = r;
      } else {
        const cb = q - 128;
        const cr = r - 128;
        pixels[o] = clamp(p + 1.402 * cr);
        pixels[o + 1] = clamp(p - 0.344136 * cb - 0.714136 * cr);
        pixels[o + 2] = clamp(p + 1.772 * cb);
      }
    }
  }
  return { width, height, channels: 3, stride: width * 3, pixels, cropped: false };
}

function clamp(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}
