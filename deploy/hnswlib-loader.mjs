#!/usr/bin/env node
/**
 * Rebuilds hnswlib-node with a faster index loader; npm runs this after installing (postinstall).
 *
 * hnswlib's loadIndex checks a saved graph by asking the file stream for its position twice per
 * point, and each ask is an lseek system call: 200k of them for 100k references, about a quarter of
 * the daemon's start-up there (README "Performance"). This edits that loop to count the position
 * itself (the same checks, the same error on a short or inconsistent file), reserves the label map
 * before filling it, and rebuilds the addon with node-gyp in a scratch copy of the package; the
 * installed addon is replaced only when that build succeeds.
 *
 * When the source does not hold the expected lines (another hnswlib-node version) or the build
 * fails, it says so and leaves hnswlib-node as installed: the daemon works the same, it only starts
 * slower with a large reference set. `linewatch bench` reports which loader it ran.
 * Usage: node deploy/hnswlib-loader.mjs [--check]   (--check: exit 1 unless the patched loader is installed)
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = join(root, 'node_modules', 'hnswlib-node');
const header = join('src', 'hnswlib', 'hnswalg.h');
const addon = join('build', 'Release', 'addon.node');
/** Written into the package once its addon is the patched build (the bench reads it); names the edit. */
const stampFile = join(pkg, 'linewatch-loader');
const stamp = 'hnswlib loadIndex without per-point seeks, v1\n';

const edits = [
  {
    from: `        input.seekg(cur_element_count * size_data_per_element_, input.cur);
        for (size_t i = 0; i < cur_element_count; i++) {
            if (input.tellg() < 0 || input.tellg() >= total_filesize) {
                throw std::runtime_error("Index seems to be corrupted or unsupported");
            }

            unsigned int linkListSize;
            readBinaryPOD(input, linkListSize);
            if (linkListSize != 0) {
                input.seekg(linkListSize, input.cur);
            }
        }
`,
    to: `        input.seekg(cur_element_count * size_data_per_element_, input.cur);
        // linewatch: the position is counted here, not asked of the stream (each tellg or seekg is an lseek).
        std::streamoff linkListsAt = input.tellg();
        for (size_t i = 0; i < cur_element_count; i++) {
            if (!input || linkListsAt < 0 || linkListsAt >= total_filesize) {
                throw std::runtime_error("Index seems to be corrupted or unsupported");
            }

            unsigned int linkListSize;
            readBinaryPOD(input, linkListSize);
            linkListsAt += sizeof(linkListSize) + (std::streamoff) linkListSize;
            if (linkListSize != 0) {
                input.ignore(linkListSize);
            }
        }
        if (!input) {
            throw std::runtime_error("Index seems to be corrupted or unsupported");
        }
`,
  },
  {
    from: `        for (size_t i = 0; i < cur_element_count; i++) {
            label_lookup_[getExternalLabel(i)] = i;`,
    to: `        label_lookup_.reserve(cur_element_count);
        for (size_t i = 0; i < cur_element_count; i++) {
            label_lookup_[getExternalLabel(i)] = i;`,
  },
];

/** Whether hnswlib-node's addon is this script's rebuild (linewatch bench names the loader it ran). */
export function installed() {
  return existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp;
}

/** node-gyp as npm runs it for the package's own install (npm sets npm_config_node_gyp for scripts). */
function nodeGyp() {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  // Run by hand: the node-gyp of the npm installed with this node.
  const candidates = [process.env.npm_execpath && join(dirname(process.env.npm_execpath), '..'), join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm')];
  for (const npm of candidates) {
    const script = npm && join(npm, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (script && existsSync(script)) return script;
  }
  throw new Error('node-gyp not found (it comes with npm)');
}

function patch() {
  if (installed()) return 'already installed';
  // A hnswlib-node without its sources (a prebuilt-only release, say) is left as it is, like any other mismatch.
  if (!existsSync(join(pkg, header))) return `skipped: this hnswlib-node has no ${header}`;
  let patched = readFileSync(join(pkg, header), 'utf8');
  for (const { from, to } of edits) {
    if (patched.split(from).length !== 2) return `skipped: ${header} of this hnswlib-node does not hold the lines the edit expects`;
    patched = patched.replace(from, to);
  }
  // Built beside the package so node-gyp finds node-addon-api the same way; the installed addon
  // is swapped only after a complete build.
  const scratch = join(root, 'node_modules', '.hnswlib-node-build');
  rmSync(scratch, { recursive: true, force: true });
  try {
    cpSync(pkg, scratch, { recursive: true, filter: (path) => !path.startsWith(join(pkg, 'build')) });
    writeFileSync(join(scratch, header), patched);
    execFileSync(process.execPath, [nodeGyp(), 'rebuild'], { cwd: scratch, stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(join(scratch, addon), join(pkg, addon));
    writeFileSync(stampFile, stamp);
    return 'installed';
  } catch (err) {
    const detail = String(err.stderr ?? err.message ?? err).trim().split('\n').slice(-3).join(' | ');
    return `skipped: the rebuild failed (${detail})`;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    console.log(installed() ? 'hnswlib-node: patched loader installed' : 'hnswlib-node: loader as published');
    process.exit(installed() ? 0 : 1);
  }
  const outcome = patch();
  const slower = outcome.startsWith('skipped') ? ' hnswlib-node is left as published: everything works, start-up with a large reference set is slower.' : '';
  console.log(`linewatch: hnswlib-node index loader without per-point seeks: ${outcome}.${slower}`);
}
