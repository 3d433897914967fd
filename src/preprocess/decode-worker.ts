/**
 * Decode thread of a Preprocessor with threads: the JS fast path on large JPEGs, off the
 * calling thread. Errors go back by class (ImageError, RoiError) so callers see what inline
 * decoding would have thrown.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { thrownInThread, type DecodeReply, type DecodeRequest } from './pool.js';
import { readImageHeader } from './size.js';
import { Preprocessor, type DecodeSetup } from './tensor.js';

const { spec, limits } = workerData as DecodeSetup;
const preprocessor = new Preprocessor(spec, undefined, limits);
const port = parentPort!;
// One tensor, copied into the reply: cheaper here than a fresh one transferred per frame.
const tensor = preprocessor.createTensor();

port.on('message', ({ id, image, roi }: DecodeRequest) => {
  try {
    const data = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
    const decoded = preprocessor.fromJpeg(data, readImageHeader(data), tensor, roi);
    port.postMessage({ id, tensor: decoded ? tensor : null } satisfies DecodeReply);
  } catch (err) {
    port.postMessage({ id, error: thrownInThread(err) } satisfies DecodeReply);
  }
});
