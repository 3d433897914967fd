import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { isMissingFile, readRegularFile, UserError } from '../common/index.js';
import { loadBundle, maxManifestBytes } from './bundle.js';

/** Signatures and PEM keys are a few hundred bytes. */
const maxKeyFileBytes = 64 * 1024;

/**
 * Bundle signatures: ed25519 over the exact bytes of manifest.json. The manifest holds the model's
 * sha256, so the signature covers the model too (loadBundle checks that hash).
 * signature.json = { "algorithm": "ed25519", "keyId": "<16 hex>", "signature": "<base64 of 64 bytes>" }.
 * training/sign.py writes the same file with openssl; the two must stay in step.
 */
export interface SignatureFile {
  algorithm: 'ed25519';
  keyId: string;
  signature: string;
}

export type SignatureCheck = { signed: true; keyId: string } | { signed: false };

const SIGN_HINT = 'sign it with `linewatch keys sign <bundle-folder> --key FILE` or training `--sign-key FILE`';

/** First 16 hex digits of sha256(SPKI DER): `openssl pkey -pubin -in x.pub -outform DER | sha256sum`. */
export function keyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

/** Writes `<name>.key` (PKCS8 PEM, 0600) and `<name>.pub` (SPKI PEM, 0644) into dir; never overwrites. */
export async function generateKeyPair(dir: string, name: string): Promise<{ privateKeyPath: string; publicKeyPath: string; keyId: string }> {
  if (name === '' || name !== basename(name) || name.startsWith('.')) {
    throw new UserError(`key name "${name}" is not a plain file name`, 'use --name with letters, digits and dashes, e.g. --name line3-signing');
  }
  const absolute = resolve(dir);
  const privateKeyPath = join(absolute, `${name}.key`);
  const publicKeyPath = join(absolute, `${name}.pub`);
  await mkdir(absolute, { recursive: true });
  const existing = (await readdir(absolute)).filter((f) => f === `${name}.key` || f === `${name}.pub`);
  if (existing.length > 0) {
    throw new UserError(
      `${existing.map((f) => join(absolute, f)).join(' and ')} already exist${existing.length === 1 ? 's' : ''}: a signing key is never overwritten`,
      'choose another --name or --out, or move the old key files away first',
    );
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  // 'wx' also refuses a file that appeared since the check above.
  await writeFile(privateKeyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  await writeFile(publicKeyPath, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644, flag: 'wx' });
  return { privateKeyPath, publicKeyPath, keyId: keyId(publicKey) };
}

/** Signs dir/manifest.json with the ed25519 private key and writes dir/signature.json. */
export async function signBundle(dir: string, privateKeyPath: string): Promise<{ keyId: string }> {
  const privateKey = await readPrivateKey(privateKeyPath);
  // Signing a corrupt or invalid bundle would vouch for a model the daemon then refuses.
  const bundle = await loadBundle(dir);
  const manifest = await readManifest(bundle.dir);
  const id = keyId(createPublicKey(privateKey));
  const file: SignatureFile = { algorithm: 'ed25519', keyId: id, signature: sign(null, manifest, privateKey).toString('base64') };
  const target = join(bundle.dir, 'signature.json');
  const temp = `${target}.${process.pid}.tmp`;
  await writeFile(temp, JSON.stringify(file, null, 2) + '\n');
  await rename(temp, target);
  return { keyId: id };
}

/**
 * Checks dir/signature.json against the trusted public keys. Only the manifest is checked here;
 * the caller then runs loadBundle, which checks the model file against the manifest's sha256.
 */
export async function verifyBundleSignature(dir: string, options: { trustedKeysDir: string; allowUnsigned: boolean }): Promise<SignatureCheck> {
  const absolute = resolve(dir);
  const signaturePath = join(absolute, 'signature.json');
  let text: string;
  try {
    text = (await readRegularFile(signaturePath, { what: 'bundle signature', maxBytes: maxKeyFileBytes, hint: 're-copy the bundle' })).toString('utf8');
  } catch (err) {
    if (!isMissingFile(err)) throw err;
    if (options.allowUnsigned) return { signed: false };
    throw new UserError(
      `the bundle ${absolute} is not signed (it has no signature.json)`,
      `${SIGN_HINT}, or set models.allowUnsigned (development only)`,
    );
  }
  const signature = parseSignatureFile(text, signaturePath);
  const trusted = await loadTrustedKeys(options.trustedKeysDir);
  const key = trusted.keys.get(signature.keyId);
  if (!key) {
    const none = trusted.missing ? ` (${trusted.dir} does not exist, so no key is trusted)` : trusted.keys.size === 0 ? ` (${trusted.dir} holds no *.pub key)` : '';
    throw new UserError(
      `the bundle ${absolute} is signed by unknown key ${signature.keyId}${none}`,
      `add its public key (the .pub made with \`linewatch keys generate\`) to ${trusted.dir}, or sign the bundle with a key whose .pub is there`,
    );
  }
  const manifest = await readManifest(absolute);
  if (!verify(null, manifest, key, Buffer.from(signature.signature, 'base64'))) {
    throw new UserError(
      `the signature of manifest.json does not verify with key ${signature.keyId}: the manifest was changed after signing, or the signature is not for it`,
      `re-copy the bundle as it was signed, or ${SIGN_HINT} again`,
    );
  }
  return { signed: true, keyId: signature.keyId };
}

function parseSignatureFile(text: string, path: string): SignatureFile {
  const malformed = (problem: string): never => {
    throw new UserError(
      `${path} is malformed: ${problem}`,
      `it must be {"algorithm": "ed25519", "keyId": "<16 hex digits>", "signature": "<base64>"}; ${SIGN_HINT} again or re-copy the bundle`,
    );
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return malformed(`not JSON (${(err as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return malformed('not a JSON object');
  const { algorithm, keyId: id, signature } = json as Record<string, unknown>;
  if (algorithm !== 'ed25519') malformed(`algorithm is ${JSON.stringify(algorithm)}, not "ed25519"`);
  if (typeof id !== 'string' || !/^[0-9a-f]{16}$/.test(id)) malformed(`keyId is ${JSON.stringify(id)}, not 16 hex digits`);
  // 64 bytes of ed25519 signature are 86 base64 characters and "==".
  if (typeof signature !== 'string' || !/^[A-Za-z0-9+/]{86}==$/.test(signature)) malformed('signature is not the base64 of a 64-byte ed25519 signature');
  return { algorithm: 'ed25519', keyId: id as string, signature: signature as string };
}

async function loadTrustedKeys(dir: string): Promise<{ dir: string; keys: Map<string, KeyObject>; missing: boolean }> {
  const absolute = resolve(dir);
  let names: string[];
  try {
    names = await readdir(absolute);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { dir: absolute, keys: new Map(), missing: true };
    throw new UserError(`cannot read the trusted keys folder ${absolute}: ${(err as Error).message}`, 'make it readable by the linewatch user (models.trustedKeysDir)', { cause: err });
  }
  const keys = new Map<string, KeyObject>();
  for (const name of names.filter((n) => n.endsWith('.pub')).sort()) {
    const path = join(absolute, name);
    const pem = await readRegularFile(path, { what: 'trusted key', maxBytes: maxKeyFileBytes, hint: 'replace it with a .pub made by `linewatch keys generate`, or remove it' });
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch (err) {
      throw new UserError(`trusted key ${path} is not a PEM public key: ${(err as Error).message}`, 'replace it with a .pub made by `linewatch keys generate`, or remove it', { cause: err });
    }
    if (key.asymmetricKeyType !== 'ed25519') {
      throw new UserError(`trusted key ${path} is a ${key.asymmetricKeyType} key, not ed25519`, 'replace it with a .pub made by `linewatch keys generate`, or remove it');
    }
    keys.set(keyId(key), key);
  }
  return { dir: absolute, keys, missing: false };
}

async function readPrivateKey(path: string): Promise<KeyObject> {
  const pem = await readRegularFile(path, { what: 'signing key', maxBytes: maxKeyFileBytes, hint: 'pass the .key file made by `linewatch keys generate` with --key' });
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new UserError(`${path} is not a PEM private key: ${(err as Error).message}`, 'pass the .key file (not the .pub) made by `linewatch keys generate`', { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new UserError(`${path} is a ${key.asymmetricKeyType} key, not ed25519`, 'make an ed25519 key with `linewatch keys generate`');
  }
  return key;
}

function readManifest(bundleDir: string): Promise<Buffer> {
  return readRegularFile(join(bundleDir, 'manifest.json'), { what: 'model manifest', maxBytes: maxManifestBytes, hint: 'a bundle holds manifest.json, the .onnx file and signature.json; re-copy it' });
}
