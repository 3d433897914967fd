import { z } from 'zod';
import type { FleetAddress } from './topics.js';

/** Version 2 adds the full provenance (model key, the admitting decision, who labeled it); version 1 messages are still read. */
export const FLEET_SCHEMA = 'linewatch/fleet-ref/2';
const FLEET_SCHEMA_1 = 'linewatch/fleet-ref/1';

/** Why a fleet message was not imported; status counts each. */
export type Refusal =
  | 'bad_topic'
  | 'too_large'
  | 'bad_json'
  | 'bad_message'
  | 'bad_base64'
  | 'bad_vector'
  | 'bad_image'
  | 'forged_device'
  | 'untrusted_site'
  | 'unknown_model'
  | 'cap'
  | 'busy';

/**
 * Where a shared reference came from, as its own device knows it. The device is the message's
 * (its topic level, which the broker's ACL binds to the publisher), so it is not repeated here.
 */
export interface Provenance {
  source: 'human' | 'auto';
  /** The reference's origin on its device: an image path, `event:<id>`, ... */
  origin: string;
  /** ms since epoch. */
  createdAt: number;
  confidence: number | null;
  /** The model it was added with on its device (the message's modelKey is the vector's); null when not known. */
  modelKey: string | null;
  /** What admitted an automatic reference (JSON); null for a human one. */
  decision: string | null;
  /** Who labeled a human reference (`ui:<user>`, `cli`, `mqtt`, `enroll`, ...); null for an automatic one. */
  labeledBy: string | null;
}

export interface SharedReference extends FleetAddress {
  label: string;
  provenance: Provenance;
  vector: Float32Array;
  /** The item (PNG or JPEG, at most the model input size): another model re-embeds it, a technician sees it. */
  image: Buffer | null;
}

export type FleetMessage = ({ kind: 'live' } & SharedReference) | ({ kind: 'deleted'; deletedAt: number } & FleetAddress);

// Strict base64 (Buffer.from skips bad characters without a word).
const base64 = z.string().regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, 'base64');
const common = {
  schema: z.enum([FLEET_SCHEMA, FLEET_SCHEMA_1]),
  site: z.string().min(1).max(200),
  device: z.string().min(1).max(200),
  localId: z.number().int().positive(),
  modelKey: z.string().min(1).max(300),
};
const live = z.strictObject({
  ...common,
  label: z.string().trim().min(1).max(100).regex(/^[^\u0000-\u001f]+$/),
  provenance: z.strictObject({
    source: z.enum(['human', 'auto']),
    origin: z.string().max(4096),
    createdAt: z.number().int().nonnegative(),
    confidence: z.number().min(0).max(1).nullable(),
    // Absent in version 1.
    modelKey: z.string().min(1).max(300).nullable().default(null),
    decision: z.string().max(16_384).nullable().default(null),
    labeledBy: z.string().min(1).max(200).nullable().default(null),
  }),
  vector: z.string().min(1),
  image: base64.min(1).nullable(),
});
const deleted = z.strictObject({ ...common, deleted: z.literal(true), deletedAt: z.number().int().nonnegative() });

export function encodeShared(reference: SharedReference): string {
  const { site, device, localId, modelKey, label, provenance, vector, image } = reference;
  const vectorBytes = Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
  return JSON.stringify({ schema: FLEET_SCHEMA, site, device, localId, modelKey, label, provenance, vector: vectorBytes.toString('base64'), image: image?.toString('base64') ?? null });
}

/** A tombstone: retained in place of the reference, so a device that was away learns of the deletion. */
export function encodeDeleted(address: FleetAddress, deletedAt: number): string {
  return JSON.stringify({ schema: FLEET_SCHEMA, ...address, deleted: true, deletedAt });
}

/**
 * Reads a fleet message received on the topic of `address`. An empty payload (a retained message
 * cleared by hand) deletes too. Every field must agree with the topic, whose device level the
 * broker's ACL binds to the publisher: a payload naming another device is forged.
 */
export function decodeFleetMessage(address: FleetAddress, payload: Buffer): FleetMessage | { refused: Refusal; detail: string } {
  if (payload.length === 0) return { kind: 'deleted', deletedAt: Date.now(), ...address };
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    return { refused: 'bad_json', detail: (err as Error).message };
  }
  const isDeleted = typeof json === 'object' && json !== null && 'deleted' in json;
  const parsed = (isDeleted ? deleted : live).safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.');
    const reason: Refusal = (field === 'vector' || field === 'image') && issue.code === 'invalid_format' ? 'bad_base64' : 'bad_message';
    return { refused: reason, detail: `${field || 'message'}: ${issue.message}` };
  }
  const m = parsed.data;
  for (const key of ['site', 'device', 'localId', 'modelKey'] as const) {
    if (m[key] !== address[key]) return { refused: 'forged_device', detail: `the payload's ${key} ${JSON.stringify(m[key])} is not the topic's ${JSON.stringify(address[key])}` };
  }
  if ('deleted' in m) return { kind: 'deleted', deletedAt: m.deletedAt, ...address };
  const vector = base64Vector(m.vector);
  if (!vector) return { refused: 'bad_base64', detail: 'vector: base64' };
  if (vector === 'misaligned') return { refused: 'bad_vector', detail: 'vector: not a whole number of float32 values' };
  return { kind: 'live', ...address, label: m.label, provenance: m.provenance, vector, image: m.image === null ? null : Buffer.from(m.image, 'base64') };
}

function base64Vector(text: string): Float32Array | 'misaligned' | null {
  if (!base64.safeParse(text).success) return null;
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length === 0 || bytes.length % 4 !== 0) return 'misaligned';
  // Copy: a Buffer's offset in its pool need not be 4-byte aligned.
  return new Float32Array(new Uint8Array(bytes).buffer);
}
