export { ImageError, imageLimitDefaults, rawToJpeg, RoiError, type ImageLimits, type Roi } from './image.js';
export { decodeThreadPixels, Preprocessor, type PreprocessorOptions, type TensorSpec } from './tensor.js';
export { thumbnail, type ThumbnailOptions } from './thumbnail.js';
export { rawToPng } from './png.js';
export { readImageHeader, type ImageHeader } from './size.js';
export { probeImage } from './probe.js';
export { DecodeThreadError } from './pool.js';
