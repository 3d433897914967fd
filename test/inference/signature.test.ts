import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import { Header } from 'tar';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../dist/common/index.js';
import { generateKeyPair, keyId, loadBundle, packBundle, signBundle, unpackBundle, verifyBundleSignature } from '../../dist/inference/index.js';
import { runCommand, tempDir } from '../helpers/daemon.js';
import { fixtureDir } from './helpers.js';

const repoRoot = new URL('../../', import.meta.url).pathname;

/** A copy of the tiny fixture bundle in its own temp folder. */
function bundleCopy(): string {
  const dir = join(tempDir('linewatch-signed-'), 'bundle');
  cpSync(fixtureDir, dir, { recursive: true });
  return dir;
}

/** A key pair, and a trusted-keys folder holding its public key, as on a device. */
async function signer(name = 'line3') {
  const dir = tempDir('linewatch-keys-');
  const made = await generateKeyPair(dir, name);
  const trustedKeysDir = join(dir, 'trusted-keys');
  mkdirSync(trustedKeysDir);
  cpSync(made.publicKeyPath, join(trustedKeysDir, `${name}.pub`));
  return { ...made, dir, trustedKeysDir };
}

async function refusal(promise: Promise<unknown>): Promise<UserError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  return err as UserError;
}

/** A plain tar of hand-made entries, for archives `packBundle` would never write. */
function tarOf(entries: { path: string; type?: 'File' | 'SymbolicLink' | 'Directory'; data?: Buffer; linkpath?: string }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const { path, type = 'File', data = Buffer.alloc(0), linkpath } of entries) {
    const header = Buffer.alloc(512);
    new Header({ path, type, size: data.length, mode: 0o644, mtime: new Date(0), linkpath }).encode(header, 0);
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  return Buffer.concat([...blocks, Buffer.alloc(1024)]);
}

describe('bundle signatures', () => {
  it('signs manifest.json and verifies it with the trusted public key; the key id is the one openssl computes', async () => {
    const key = await signer();
    const bundle = bundleCopy();
    expect(statSync(key.privateKeyPath).mode & 0o777).toBe(0o600);
    const der = execFileSync('openssl', ['pkey', '-pubin', '-in', key.publicKeyPath, '-outform', 'DER']);
    const opensslId = execFileSync('sha256sum', { input: der }).toString().slice(0, 16);
    expect(key.keyId).toBe(opensslId);
    expect(keyId(createPublicKey(readFileSync(key.publicKeyPath)))).toBe(opensslId);

    expect(await signBundle(bundle, key.privateKeyPath)).toEqual({ keyId: key.keyId });
    const file = JSON.parse(readFileSync(join(bundle, 'signature.json'), 'utf8'));
    expect(file).toMatchObject({ algorithm: 'ed25519', keyId: key.keyId });
    expect(Buffer.from(file.signature, 'base64')).toHaveLength(64);
    expect(await verifyBundleSignature(bundle, { trustedKeysDir: key.trustedKeysDir, allowUnsigned: false })).toEqual({ signed: true, keyId: key.keyId });
    expect(readdirSync(bundle).sort()).toEqual(['manifest.json', 'model.onnx', 'signature.json']);
  });

  it('never overwrites a key pair', async () => {
    const key = await signer();
    const err = await refusal(generateKeyPair(key.dir, 'line3'));
    expect(err.message).toMatch(/line3\.key and .*line3\.pub already exist/);
  });

  it('refuses an unsigned bundle unless unsigned bundles are allowed', async () => {
    const key = await signer();
    const err = await refusal(verifyBundleSignature(fixtureDir, { trustedKeysDir: key.trustedKeysDir, allowUnsigned: false }));
    expect(err.message).toMatch(/is not signed/);
    expect(err.hint).toMatch(/linewatch keys sign.*--sign-key.*models\.allowUnsigned \(development only\)/);
    expect(await verifyBundleSignature(fixtureDir, { trustedKeysDir: key.trustedKeysDir, allowUnsigned: true })).toEqual({ signed: false });
  });

  it('refuses a bundle signed by a key that is not trusted, and says where to add it', async () => {
    const trusted = await signer('trusted');
    const other = await signer('other');
    const bundle = bundleCopy();
    await signBundle(bundle, other.privateKeyPath);
    for (const allowUnsigned of [false, true]) {
      const err = await refusal(verifyBundleSignature(bundle, { trustedKeysDir: trusted.trustedKeysDir, allowUnsigned }));
      expect(err.message).toContain(`signed by unknown key ${other.keyId}`);
      expect(err.hint).toContain(`add its public key`);
      expect(err.hint).toContain(trusted.trustedKeysDir);
    }
    const missing = join(trusted.dir, 'no-such-folder');
    const none = await refusal(verifyBundleSignature(bundle, { trustedKeysDir: missing, allowUnsigned: false }));
    expect(none.message).toContain(`${missing} does not exist, so no key is trusted`);
  });

  it('names a trusted-keys file that is not an ed25519 public key', async () => {
    const key = await signer();
    const bundle = bundleCopy();
    await signBundle(bundle, key.privateKeyPath);
    writeFileSync(join(key.trustedKeysDir, 'broken.pub'), 'not a key\n');
    const err = await refusal(verifyBundleSignature(bundle, { trustedKeysDir: key.trustedKeysDir, allowUnsigned: false }));
    expect(err.message).toContain(join(key.trustedKeysDir, 'broken.pub'));
  });

  it('refuses a manifest changed after signing', async () => {
    const key = await signer();
    const bundle = bundleCopy();
    await signBundle(bundle, key.privateKeyPath);
    const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8'));
    manifest.classifier.threshold = 0.9;
    writeFileSync(join(bundle, 'manifest.json'), JSON.stringify(manifest, null, 2));
    const err = await refusal(verifyBundleSignature(bundle, { trustedKeysDir: key.trustedKeysDir, allowUnsigned: false }));
    expect(err.message).toBe(
      `the signature of manifest.json does not verify with key ${key.keyId}: the manifest was changed after signing, or the signature is not for it`,
    );
  });

  it('refuses a malformed signature.json', async () => {
    const key = await signer();
    const bundle = bundleCopy();
    await signBundle(bundle, key.privateKeyPath);
    const good = JSON.parse(readFileSync(join(bundle, 'signature.json'), 'utf8'));
    const cases: [string, RegExp][] = [
      ['{', /not JSON/],
      [JSON.stringify({ ...good, algorithm: 'rsa' }), /algorithm is "rsa"/],
      [JSON.stringify({ ...good, keyId: 'abc' }), /keyId is "abc"/],
      [JSON.stringify({ ...good, signature: 'AAAA' }), /signature is not the base64 of a 64-byte/],
    ];
    for (const [text, message] of cases) {
      writeFileSync(join(bundle, 'signature.json'), text);
      const err = await refusal(verifyBundleSignature(bundle, { trustedKeysDir: key.trustedKeysDir, allowUnsigned: true }));
      expect(err.message).toMatch(/signature\.json is malformed/);
      expect(err.message).toMatch(message);
    }
  });

  it('leaves a tampered model to loadBundle: the signature still verifies, the sha256 check refuses it', async () => {
    const key = await signer();
    const bundle = bundleCopy();
    await signBundle(bundle, key.privateKeyPath);
    const model = readFileSync(join(bundle, 'model.onnx'));
    model[model.length - 1]! ^= 0x01;
    writeFileSync(join(bundle, 'model.onnx'), model);
    expect(await verifyBundleSignature(bundle, { trustedKeysDir: key.trustedKeysDir, allowUnsigned: false })).toEqual({ signed: true, keyId: key.keyId });
    const err = await refusal(loadBundle(bundle));
    expect(err.message).toMatch(/^model\.onnx sha256 [0-9a-f]{64} does not match manifest [0-9a-f]{64}: the bundle is corrupt or was edited/);
  });

  it('agrees with the training pipeline, which signs with the openssl command line', async () => {
    const key = await signer();
    const byNode = bundleCopy();
    const byTraining = bundleCopy();
    await signBundle(byNode, key.privateKeyPath);
    // training/sign.py: `openssl pkeyutl -sign -rawin` and the key id from `openssl pkey -pubout -outform DER`.
    const script = 'import sys; from pathlib import Path; from training.sign import sign_bundle; print(sign_bundle(Path(sys.argv[1]), Path(sys.argv[2])))';
    const printed = execFileSync('/usr/bin/python3', ['-c', script, byTraining, key.privateKeyPath], { cwd: repoRoot }).toString().trim();
    expect(printed).toBe(key.keyId);
    expect(await verifyBundleSignature(byTraining, { trustedKeysDir: key.trustedKeysDir, allowUnsigned: false })).toEqual({ signed: true, keyId: key.keyId });
    // ed25519 signatures are deterministic: both routes write the same file.
    expect(readFileSync(join(byTraining, 'signature.json'), 'utf8')).toBe(readFileSync(join(byNode, 'signature.json'), 'utf8'));
  });
});

describe('bundle archives', () => {
  it('packs a signed bundle flat and deterministically; unpacking gives the same bytes', async () => {
    const key = await signer();
    const bundle = bundleCopy();
    await signBundle(bundle, key.privateKeyPath);
    const archive = await packBundle(bundle);
    expect(archive.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    // Another copy of the same files (other times) gives the same archive.
    utimesSync(join(bundle, 'model.onnx'), new Date('2001-01-01'), new Date('2001-01-01'));
    expect((await packBundle(bundle)).equals(archive)).toBe(true);

    const dest = join(tempDir(), 'unpacked');
    await unpackBundle(archive, dest, { maxBytes: 1 << 20 });
    expect(readdirSync(dest).sort()).toEqual(['manifest.json', 'model.onnx', 'signature.json']);
    for (const name of readdirSync(dest)) expect(readFileSync(join(dest, name)).equals(readFileSync(join(bundle, name)))).toBe(true);
    expect(await verifyBundleSignature(dest, { trustedKeysDir: key.trustedKeysDir, allowUnsigned: false })).toMatchObject({ signed: true });
    await loadBundle(dest);
  });

  it('accepts a plain tar made with `tar -C <bundle> .`', async () => {
    const archive = execFileSync('tar', ['-cf', '-', '-C', fixtureDir, '.']);
    const dest = join(tempDir(), 'unpacked');
    await unpackBundle(archive, dest, { maxBytes: 1 << 20 });
    expect(readdirSync(dest).sort()).toEqual(['manifest.json', 'model.onnx']);
    await loadBundle(dest);
  });

  it('refuses traversal, links, folders, too many files, too many bytes and what is not a tar', async () => {
    const manifest = { path: 'manifest.json', data: readFileSync(join(fixtureDir, 'manifest.json')) };
    const cases: [Buffer, RegExp][] = [
      [tarOf([manifest, { path: '../x', data: Buffer.from('x') }]), /entry "\.\.\/x" points outside the bundle folder/],
      [tarOf([manifest, { path: '/etc/cron.d/x', data: Buffer.from('x') }]), /entry "\/etc\/cron\.d\/x" points outside/],
      [tarOf([manifest, { path: 'model.onnx', type: 'SymbolicLink', linkpath: '/etc/passwd' }]), /entry "model\.onnx" is a link/],
      [execFileSync('tar', ['-czf', '-', '-C', join(fixtureDir, '..'), 'tiny-model']), /entry "tiny-model\/" is a folder/],
      [tarOf([manifest, { path: 'sub/model.onnx', data: Buffer.from('x') }]), /entry "sub\/model\.onnx" is inside a folder/],
      [tarOf([manifest, ...Array.from({ length: 8 }, (_, i) => ({ path: `f${i}`, data: Buffer.from('x') }))]), /more than 8 files/],
      [tarOf([manifest, manifest]), /holds manifest\.json twice/],
      [tarOf([{ path: 'model.onnx', data: Buffer.from('x') }]), /holds no manifest\.json/],
      [await packBundle(fixtureDir), /holds more than 1000 bytes/],
      [Buffer.from('this is not a tar file, just some text that a technician uploaded by mistake\n'.repeat(20)), /^not a bundle archive: expected a \.tar or \.tar\.gz/],
      [Buffer.alloc(0), /^not a bundle archive/],
    ];
    for (const [archive, message] of cases) {
      const dest = join(tempDir(), 'unpacked');
      const err = await refusal(unpackBundle(archive, dest, { maxBytes: 1000 }));
      expect(err.message).toMatch(message);
      expect(err.hint).toBeTruthy();
      // Nothing is written before every entry has been checked.
      expect(() => readdirSync(dest)).toThrow(/ENOENT/);
    }
  });

  it('refuses to unpack into a folder that is not empty', async () => {
    const dest = tempDir();
    writeFileSync(join(dest, 'old'), '');
    const err = await refusal(unpackBundle(await packBundle(fixtureDir), dest, { maxBytes: 1 << 20 }));
    expect(err.message).toMatch(/folder is not empty/);
  });
});

describe('linewatch keys', () => {
  it('generates a key pair, signs a bundle with it, and explains a bad key path without a stack', async () => {
    const out = tempDir();
    const generated = await runCommand(['keys', 'generate', '--out', out, '--name', 'line3']);
    expect(generated.code).toBe(0);
    expect(generated.stdout).toContain(join(out, 'line3.key'));
    expect(generated.stdout).toMatch(/key id: +[0-9a-f]{16}\n/);
    expect(generated.stdout).toContain('/etc/linewatch/trusted-keys/');
    const again = await runCommand(['keys', 'generate', '--out', out, '--name', 'line3']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exist');

    const bundle = bundleCopy();
    const signed = await runCommand(['keys', 'sign', bundle, '--key', join(out, 'line3.key')]);
    expect(signed.code).toBe(0);
    expect(signed.stdout).toContain(`signed ${bundle} with key`);
    expect(readdirSync(bundle)).toContain('signature.json');

    const cases: [string[], RegExp][] = [
      [['--key', join(out, 'missing.key')], /cannot read the signing key .*missing\.key: it does not exist/],
      [['--key', join(out, 'line3.pub')], /line3\.pub is not a PEM private key/],
      [[], /keys sign takes one bundle folder and --key FILE/],
    ];
    for (const [args, message] of cases) {
      const bad = await runCommand(['keys', 'sign', bundle, ...args]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(message);
      expect(bad.stderr).toContain('fix:');
      expect(bad.stderr).not.toMatch(/^\s+at /m);
    }
  });
});
