/**
 * Mutated model bundles for the push path: the tiny test model's archive with a field, a byte,
 * an entry or the gzip stream changed. The tar is written here by hand, so entries the real
 * packer would never make (traversal, links, devices, lying sizes) can be sent.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { tinyModel } from '../helpers/daemon.js';
import { hostileValue } from './configs.js';
import type { Draw } from './draw.js';

const manifest = JSON.parse(readFileSync(join(tinyModel, 'manifest.json'), 'utf8')) as Record<string, unknown>;
const model = readFileSync(join(tinyModel, 'model.onnx'));
const fields = ['name', 'version', 'file', 'sha256', 'precision', 'input', 'input.name', 'input.width', 'input.height', 'input.layout', 'input.colour', 'input.mean', 'input.std', 'output.name', 'output.dimension', 'metric', 'classifier', 'classifier.k', 'classifier.threshold', 'classifier.goodLabel'];

interface Entry {
  name: string;
  data: Buffer;
  /** ustar type: 0 file, 1 hard link, 2 symlink, 3 char device, 5 folder, 6 FIFO. */
  type?: string;
  link?: string;
  /** A size field that lies about the data. */
  size?: number;
}

function header(entry: Entry): Buffer {
  const out = Buffer.alloc(512);
  Buffer.from(entry.name).copy(out, 0, 0, 100);
  out.write('0000644\0', 100);
  out.write('0000000\0', 108);
  out.write('0000000\0', 116);
  out.write(`${(entry.size ?? entry.data.length).toString(8).padStart(11, '0').slice(-11)}\0`, 124);
  out.write('00000000000\0', 136);
  out.write(' '.repeat(8), 148);
  out.write(entry.type ?? '0', 156);
  out.write(entry.link ?? '', 157);
  out.write('ustar\0' + '00', 257, 'latin1');
  let sum = 0;
  for (const byte of out) sum += byte;
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return out;
}

function tar(entries: Entry[]): Buffer {
  const parts = entries.flatMap((e) => [header(e), e.data, Buffer.alloc((512 - (e.data.length % 512)) % 512)]);
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

function setField(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let at = target;
  for (const key of keys.slice(0, -1)) at = (at[key] ??= {}) as Record<string, unknown>;
  at[keys[keys.length - 1]!] = value;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let zeros: { data: Buffer; sha: string } | undefined;

/** One mutated archive (base64 for model.push) and what was done to it. */
export function bundleInput(draw: Draw, version: string): { kind: string; archive: Buffer } {
  const m = structuredClone(manifest);
  m['version'] = version;
  let onnx: Buffer = model;
  /** Keep the manifest's sha256 right for a changed model, so ONNX Runtime itself meets it. */
  const withModel = (data: Buffer) => {
    onnx = data;
    m['sha256'] = sha256(data);
  };
  let entries = (): Entry[] => [
    { name: 'manifest.json', data: Buffer.from(JSON.stringify(m)) },
    { name: 'model.onnx', data: onnx },
  ];
  const kinds: (() => string)[] = [
    () => {
      const field = draw.pick(fields);
      setField(m, field, hostileValue(draw));
      return `manifest ${field}`;
    },
    () => {
      const text = Buffer.from(JSON.stringify(m));
      entries = () => [{ name: 'manifest.json', data: draw.chance(0.5) ? draw.truncate(text) : draw.flip(text, 4) }, { name: 'model.onnx', data: onnx }];
      return 'manifest cut or flipped';
    },
    () => (withModel(draw.flip(model, draw.int(1, 64))), 'model bytes flipped, sha256 right'),
    () => (withModel(draw.truncate(model)), 'model cut short, sha256 right'),
    () => (withModel(draw.bytes(draw.int(0, 4096))), 'model random bytes, sha256 right'),
    () => ((onnx = draw.flip(model, 4)), 'model bytes flipped, sha256 wrong'),
    () => {
      zeros ??= { data: Buffer.alloc(8 * 1024 * 1024), sha: '' };
      zeros.sha ||= sha256(zeros.data);
      onnx = zeros.data;
      m['sha256'] = zeros.sha;
      return 'model of 8 MB zeros (a gzip bomb), sha256 right';
    },
    () => {
      const name = draw.pick(['../manifest.json', '/tmp/manifest.json', 'a/../../model.onnx', 'sub/model.onnx', 'model.onnx\0.txt', 'x'.repeat(100), '.', '']);
      const base = entries();
      entries = () => [...base, { name, data: draw.bytes(16) }];
      return `extra entry ${JSON.stringify(name)}`;
    },
    () => {
      const [type, link] = draw.pick([['1', 'manifest.json'], ['2', '/dev/zero'], ['2', '../../../../etc/passwd'], ['3', ''], ['5', ''], ['6', '']] as const);
      entries = () => [{ name: 'manifest.json', data: Buffer.from(JSON.stringify(m)) }, { name: 'model.onnx', data: Buffer.alloc(0), type, link }];
      return `model.onnx of tar type ${type} ${link}`;
    },
    () => {
      const base = entries();
      entries = () => draw.pick([[...base, ...base], [base[1]!, base[0]!, base[0]!], [...base, ...Array.from({ length: 9 }, (_, i) => ({ name: `f${i}`, data: Buffer.alloc(1) }))]]);
      return 'duplicate or too many entries';
    },
    () => {
      const base = entries();
      entries = () => [base[0]!, { ...base[1]!, size: draw.pick([0, 1, base[1]!.data.length + draw.int(1, 10_000), 8 ** 11 - 1]) }];
      return 'entry size that lies';
    },
    () => {
      const base = entries();
      entries = () => [...base, { name: 'signature.json', data: Buffer.from(draw.pick(['{}', '{"algorithm":"ed25519","keyId":"00","signature":"AAAA"}', 'not json', JSON.stringify({ algorithm: 'rsa', keyId: 1 })])) }];
      return 'bad signature.json';
    },
  ];
  const kind = draw.pick(kinds)();
  const plain = tar(entries());
  const archive = gzipSync(plain);
  return draw.pick<() => { kind: string; archive: Buffer }>([
    () => ({ kind, archive }),
    () => ({ kind, archive }),
    () => ({ kind, archive }),
    () => ({ kind: `${kind}, not gzipped`, archive: plain }),
    () => ({ kind: `${kind}, gzip cut short`, archive: draw.truncate(archive) }),
    () => ({ kind: `${kind}, gzip bytes flipped`, archive: draw.flip(archive, 4) }),
  ])();
}
