import { mkdir, open, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { create, Parser, type ReadEntry } from 'tar';
import { STATE_DIR_MODE, STATE_FILE_MODE, UserError } from '../common/index.js';
import { loadBundle } from './bundle.js';

/**
 * A bundle travels (MQTT, HTTP, CLI, a dropped file) as one flat tar: manifest.json, the ONNX file
 * it names, signature.json when signed. Nothing else belongs in it, so unpacking refuses anything else.
 */
const MAX_ENTRIES = 8;
const ARCHIVE_FIX = 'archive the bundle folder\'s files themselves: `tar -czf bundle.tar.gz -C <bundle-folder> manifest.json model.onnx signature.json`';

/** A gzip'd tar of the bundle's files, flat, manifest first; the same files give the same bytes. */
export async function packBundle(dir: string): Promise<Buffer> {
  // Packing a bundle the daemon would refuse only moves the error to the device.
  const bundle = await loadBundle(dir);
  const files = ['manifest.json', bundle.manifest.file];
  if ((await readdir(bundle.dir)).includes('signature.json')) files.push('signature.json');
  // portable + a fixed mtime leave out what differs between copies of the same files (owner, times).
  return create({ gzip: true, cwd: bundle.dir, portable: true, mtime: new Date(0) }, files).concat();
}

/**
 * Extracts a bundle archive (.tar or .tar.gz) into destDir, which must be new or empty. Every entry
 * is checked before anything is written; files are fsynced so a swap after a power cut finds them.
 */
export async function unpackBundle(archive: Buffer, destDir: string, options: { maxBytes: number }): Promise<void> {
  const files = await readArchive(archive, options.maxBytes);
  if (!files.has('manifest.json')) {
    throw new UserError(`the bundle archive holds no manifest.json (it holds ${[...files.keys()].join(', ') || 'nothing'})`, ARCHIVE_FIX);
  }
  const dest = resolve(destDir);
  await mkdir(dest, { recursive: true, mode: STATE_DIR_MODE });
  if ((await readdir(dest)).length > 0) {
    throw new UserError(`cannot unpack the bundle into ${dest}: the folder is not empty`, 'unpack into a new or empty folder');
  }
  for (const [name, data] of files) {
    const handle = await open(join(dest, name), 'wx', STATE_FILE_MODE);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  const folder = await open(dest, 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}

async function readArchive(archive: Buffer, maxBytes: number): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  let total = 0;
  let refusal: UserError | undefined;
  // tar sniffs gzip itself and aborts on an extreme decompression ratio (a gzip bomb).
  const parser = new Parser({ strict: true });
  parser.on('entry', (entry: ReadEntry) => {
    try {
      const name = entryName(entry);
      if (name === undefined) {
        entry.resume();
        return;
      }
      if (files.has(name)) throw new UserError(`the bundle archive holds ${name} twice`, ARCHIVE_FIX);
      if (files.size >= MAX_ENTRIES) throw new UserError(`the bundle archive holds more than ${MAX_ENTRIES} files`, ARCHIVE_FIX);
      total += entry.size;
      if (total > maxBytes) throw new UserError(`the bundle archive holds more than ${maxBytes} bytes`, 'a bundle is manifest.json, one .onnx file and signature.json; raise the size limit only for a larger model');
      const chunks: Buffer[] = [];
      entry.on('data', (chunk: Buffer) => chunks.push(chunk));
      entry.on('end', () => files.set(name, Buffer.concat(chunks)));
    } catch (err) {
      refusal = err as UserError;
      parser.abort(refusal);
    }
  });
  await new Promise<void>((done, fail) => {
    parser.on('error', (err: Error) =>
      fail(refusal ?? new UserError('not a bundle archive: expected a .tar or .tar.gz of manifest.json, model.onnx and signature.json', `${ARCHIVE_FIX} (tar said: ${err.message})`, { cause: err })),
    );
    parser.on('end', () => done());
    parser.end(archive);
  });
  return files;
}

/** The file name of a regular top-level entry; undefined for the "./" folder entry that `tar -C dir .` writes. */
function entryName(entry: ReadEntry): string | undefined {
  const path = entry.path.startsWith('./') ? entry.path.slice(2) : entry.path;
  if (entry.type === 'Directory' && (path === '' || path === '.')) return undefined;
  const segments = path.split(/[\\/]/).filter((s) => s !== '');
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path) || segments.includes('..')) {
    throw new UserError(`the bundle archive entry ${JSON.stringify(entry.path)} points outside the bundle folder`, ARCHIVE_FIX);
  }
  if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'ContiguousFile') {
    const kind = entry.type === 'Directory' ? 'a folder' : entry.type === 'SymbolicLink' || entry.type === 'Link' ? 'a link' : `a ${entry.type} entry`;
    throw new UserError(`the bundle archive entry ${JSON.stringify(entry.path)} is ${kind}: a bundle archive holds only files, at the top level`, ARCHIVE_FIX);
  }
  if (segments.length !== 1 || segments[0] === '.') {
    throw new UserError(`the bundle archive entry ${JSON.stringify(entry.path)} is inside a folder: a bundle archive holds only files, at the top level`, ARCHIVE_FIX);
  }
  return segments[0];
}
