export { loadBundle, type Bundle } from './bundle.js';
export { Encoder, type EncoderOptions, type EncoderStats } from './encoder.js';
export { type Manifest } from './manifest.js';
export { generateKeyPair, keyId, signBundle, verifyBundleSignature, type SignatureCheck, type SignatureFile } from './signature.js';
export { packBundle, unpackBundle } from './archive.js';
