import { get } from 'sparkplug-payload';
import type { TypeStr, UMetric, UPayload } from 'sparkplug-payload/lib/sparkplugbpayload.js';

export type { TypeStr, UMetric, UPayload };

/** Eclipse Tahu's Sparkplug B protobuf encoder/decoder. */
const codec = get('spBv1.0')!;

export function encodePayload(payload: UPayload): Buffer {
  const bytes = codec.encodePayload(payload);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Throws on bytes that are not a Sparkplug B payload. */
export function decodePayload(bytes: Buffer): UPayload {
  return codec.decodePayload(bytes);
}

/** A decoded number: Int64/UInt64/DateTime arrive as a `Long` object. */
export function numberOf(value: unknown): number | null {
  if (typeof value === 'number') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { toNumber?: unknown }).toNumber === 'function') {
    return (value as { toNumber(): number }).toNumber();
  }
  return null;
}
