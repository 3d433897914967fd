export { loadBundle, type Bundle } from './bundle.js';
export { Encoder, type EncoderOptions, type EncoderStats } from './encoder.js';
export { type Manifest } from './manifest.js';
