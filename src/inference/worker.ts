/**
 * Inference worker: owns one ONNX Runtime session. session.run() blocks its thread for the whole
 * inference, so it must never run on the daemon's main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import type { FromWorker, PortInfo, ProviderAttempt, ToWorker, WorkerSetup } from './protocol.js';

const setup = workerData as WorkerSetup;
const port = parentPort!;
const send = (message: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

// Failed provider loads are reported in our own JSON log; ORT's native lines would only add noise.
ort.env.logLevel = 'fatal';

const frameLength = setup.frameShape[0] * setup.frameShape[1] * setup.frameShape[2];
const session = await openSession();

if (session) {
  port.on('message', (message: ToWorker) => void run(session, message));
}

async function openSession(): Promise<ort.InferenceSession | undefined> {
  const failed: ProviderAttempt[] = [];
  // A provider missing from this build would be dropped silently by onnxruntime-common, and the
  // session would quietly run on CPU under the requested name: skip it ourselves instead.
  const built = new Set(ort.listSupportedBackends().map((b) => b.name));
  for (const provider of setup.providers) {
    if (!built.has(provider)) {
      failed.push({ provider, error: 'not in this onnxruntime-node build' });
      continue;
    }
    try {
      const session = await ort.InferenceSession.create(setup.modelPath, {
        executionProviders: [provider],
        // The binding rejects an intraOpNumThreads key holding undefined.
        ...(setup.intraOpThreads === undefined ? {} : { intraOpNumThreads: setup.intraOpThreads }),
        // Frames arrive at camera rate; spinning threads between them would burn an edge CPU.
        extra: { session: { intra_op: { allow_spinning: '0' } } },
      });
      send({
        type: 'ready',
        provider,
        failed,
        inputs: session.inputMetadata.map(portInfo),
        outputs: session.outputMetadata.map(portInfo),
      });
      return session;
    } catch (err) {
      failed.push({ provider, error: err instanceof Error ? err.message : String(err) });
    }
  }
  send({ type: 'open-failed', failed });
  return undefined;
}

function portInfo(meta: ort.InferenceSession.ValueMetadata): PortInfo {
  return meta.isTensor ? { name: meta.name, type: meta.type, shape: [...meta.shape] } : { name: meta.name };
}

async function run(session: ort.InferenceSession, { id, count, input, output }: ToWorker): Promise<void> {
  const dim = setup.dimension;
  try {
    const feeds = {
      [setup.inputName]: new ort.Tensor('float32', input.subarray(0, count * frameLength), [count, ...setup.frameShape]),
    };
    // ORT writes the embeddings straight into our output buffer.
    const fetches = { [setup.outputName]: new ort.Tensor('float32', output.subarray(0, count * dim), [count, dim]) };
    await session.run(feeds, fetches);
    for (let row = 0; row < count; row++) {
      if (!normalise(output, row * dim, dim)) throw new Error('the model gave a NaN, infinite or all-zero vector: it is broken, or its manifest does not fit it');
    }
    send({ type: 'done', id, input, output }, [input.buffer as ArrayBuffer, output.buffer as ArrayBuffer]);
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    send({ type: 'run-failed', id, error, input, output }, [input.buffer as ArrayBuffer, output.buffer as ArrayBuffer]);
  }
}

/** L2-normalise in place (distance is 1 - dot, so vectors must be unit length); false when the vector has no direction. */
function normalise(v: Float32Array, start: number, length: number): boolean {
  let sum = 0;
  for (let i = start; i < start + length; i++) sum += v[i]! * v[i]!;
  if (!(sum > 0) || !Number.isFinite(sum)) return false;
  const scale = 1 / Math.sqrt(sum);
  for (let i = start; i < start + length; i++) v[i]! *= scale;
  return true;
}
