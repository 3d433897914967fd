// Runs an exported bundle through onnxruntime-node, the daemon's runtime, so the pipeline can
// compare its embeddings with PyTorch's. Usage (from the repo root, where node_modules lives):
//   node training/check_onnx.mjs <model.onnx> <inputs.f32> <outputs.f32> <size>
// inputs.f32: N x 1 x size x size float32 (already normalised); outputs.f32: N x D float32.
import fs from 'node:fs';
import ort from 'onnxruntime-node';

const [modelPath, inputPath, outputPath, sizeArg] = process.argv.slice(2);
const size = Number(sizeArg);
const buf = fs.readFileSync(inputPath);
const input = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
const perImage = size * size;
const n = input.length / perImage;
const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 2, interOpNumThreads: 1 });
const batch = 64;
const chunks = [];
const started = process.hrtime.bigint();
for (let i = 0; i < n; i += batch) {
  const m = Math.min(batch, n - i);
  const tensor = new ort.Tensor('float32', input.subarray(i * perImage, (i + m) * perImage), [m, 1, size, size]);
  const out = await session.run({ input: tensor });
  chunks.push(Buffer.from(new Float32Array(out.embedding.data).buffer));
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
fs.writeFileSync(outputPath, Buffer.concat(chunks));
process.stdout.write(JSON.stringify({ images: n, seconds, imagesPerSecond: n / seconds }) + '\n');
