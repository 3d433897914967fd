/**
 * Malformed control commands (MQTT payloads and HTTP bodies) and raw HTTP bytes, drawn from a
 * seeded Draw: the control plane fuzz and the reliability suite send the same kinds.
 */
import { connect as connectTcp } from 'node:net';
import type { Draw } from './draw.js';

/** A command that must be refused: its name and its payload (the MQTT payload, the HTTP body). */
export interface Case {
  kind: string;
  name: string;
  body: string | Buffer;
}

// Commands that refuse an empty parameter object, so a non-object payload (even `null`, which means
// "no parameters") can never be accepted by accident.
const needsParams = ['classifier.set', 'enroll', 'label', 'reference.remove', 'model.push', 'model.activate'];
const allCommands = [...needsParams, 'status', 'model.rollback', 'model.list', 'reload'];
// No `/`, `+`, `#` (topic level and wildcards: the broker or the subscription would not route them
// as a command name) and no control characters (mosquitto refuses them in topics).
const nameAlphabet = "abcXYZ019._-$%&'()*,;:=@[]{}<>?!~` \"\\|^äöü€漢字💥\u200b";

/** One malformed command of each kind in turn, its details drawn at random. */
export function malformed(draw: Draw, png: string): Case {
  const json = (value: unknown) => JSON.stringify(value);
  const kinds: (() => Case)[] = [
    () => ({
      kind: 'bad JSON',
      name: draw.pick(allCommands),
      body: draw.pick(['{', '{"k":', "{'k':1}", '{"k":1,}', '{"a":1}}', 'NaN', 'undefined', '   ', '\u0000', '{"threshold":.5}', draw.text('{}[]":,abc01 ', 1, 40), draw.bytes(draw.int(1, 200))]),
    }),
    () => ({ kind: 'not an object', name: draw.pick(needsParams), body: draw.pick(['[]', '[1,2]', '[{"k":3}]', '42', '-0', '1e999', '"text"', '""', 'null', 'true', 'false']) }),
    () => ({
      kind: 'missing fields',
      ...draw.pick([
        { name: 'enroll', body: json({ label: 'good' }) },
        { name: 'enroll', body: json({ image: png }) },
        { name: 'label', body: json({ label: 'good' }) },
        { name: 'label', body: json({ event: draw.uuid() }) },
        { name: 'reference.remove', body: '{}' },
        { name: 'model.push', body: json({ force: true }) },
        { name: 'model.activate', body: '{}' },
        { name: 'classifier.set', body: '{}' },
      ]),
    }),
    () => ({
      kind: 'wrong types',
      ...draw.pick([
        { name: 'classifier.set', body: json({ threshold: 'high' }) },
        { name: 'classifier.set', body: json({ k: -1 }) },
        { name: 'classifier.set', body: json({ k: 1.5 }) },
        { name: 'classifier.set', body: json({ threshold: 2 }) },
        { name: 'classifier.set', body: json({ k: 0, threshold: 0.5 }) },
        { name: 'classifier.set', body: json({ unknownDistance: -0.1 }) },
        { name: 'classifier.set', body: json({ k: '5' }) },
        { name: 'classifier.set', body: json({ threshold: [0.5] }) },
        { name: 'classifier.set', body: json({ threshold: 0.5, extra: true }) },
        { name: 'reference.remove', body: json({ ids: '1' }) },
        { name: 'reference.remove', body: json({ ids: [0] }) },
        { name: 'reference.remove', body: json({ ids: [1.5] }) },
        { name: 'reference.remove', body: json({ ids: [] }) },
        { name: 'model.push', body: json({ bundle: 5 }) },
        { name: 'model.push', body: json({ bundle: 'AAAA', force: 'yes' }) },
        { name: 'model.activate', body: json({ key: 7 }) },
        { name: 'enroll', body: json({ label: 7, image: png }) },
        { name: 'label', body: json({ event: 'not-a-uuid', label: 'good' }) },
        { name: 'status', body: json({ verbose: true }) },
        { name: 'model.list', body: json({ all: 1 }) },
        { name: 'model.rollback', body: json({ to: 'tiny@0' }) },
        { name: 'reload', body: json({ now: true }) },
      ]),
    }),
    () => ({ kind: 'unknown command', name: draw.pick(['', 'nope', 'STATUS', 'status ', 'model.', '..', '$SYS', '%2F', 'model.push2', 'x'.repeat(draw.int(1_000, 20_000)), draw.text(nameAlphabet, 1, 30)]), body: '{}' }),
    () => ({
      kind: 'huge label',
      ...draw.pick([
        { name: 'enroll', body: json({ label: 'x'.repeat(draw.int(101, 300_000)), image: png }) },
        { name: 'label', body: json({ event: draw.uuid(), label: draw.text('ab€💥', 101, 50_000) }) },
        { name: 'enroll', body: json({ label: `bad\u0001label`, image: png }) },
        { name: 'enroll', body: json({ label: '   ', image: png }) },
      ]),
    }),
    () => ({
      kind: 'base64 garbage',
      ...draw.pick([
        { name: 'model.push', body: json({ bundle: draw.bytes(draw.int(1, 64 * 1024)).toString('base64') }) },
        // A gzip header in front gets past the first check of the archive reader.
        { name: 'model.push', body: json({ bundle: Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), draw.bytes(draw.int(1, 4096))]).toString('base64') }) },
        { name: 'model.push', body: json({ bundle: '!!!not base64!!!' }) },
        { name: 'enroll', body: json({ label: 'good', image: draw.bytes(draw.int(1, 16 * 1024)).toString('base64') }) },
        // A real PNG cut short.
        { name: 'enroll', body: json({ label: 'good', image: Buffer.from(png, 'base64').subarray(0, draw.int(8, 60)).toString('base64') }) },
        { name: 'enroll', body: json({ label: 'good', image: 'ÿØÿà' }) },
      ]),
    }),
    () => ({
      kind: 'unknown target',
      ...draw.pick([
        { name: 'label', body: json({ event: draw.uuid(), label: 'good' }) },
        { name: 'model.activate', body: json({ key: `${draw.text('abc', 1, 8)}@9.9.9` }) },
        // Ids far past anything enrolled here: none exists.
        { name: 'reference.remove', body: json({ ids: [draw.int(1e6, 1e9)] }) },
      ]),
    }),
  ];
  return draw.pick(kinds)();
}

/** Request lines that broke URL parsing once, and other odd ones: each must be answered 4xx. */
export const rawLines = [
  'GET //[ HTTP/1.1',
  'GET http://[ HTTP/1.1',
  'GET //a:b@c:99999/ HTTP/1.1',
  'GET /status/../../etc/passwd HTTP/1.1',
  'GET /%zz HTTP/1.1',
  'GET /events/%E0%A4%A/image HTTP/1.1',
  'POST /control/%ZZ HTTP/1.1',
  'GET /status HTTP/9.9',
  'BREW /status HTTP/1.1',
  'GET  HTTP/1.1',
];

/** Sends raw bytes on a fresh connection; resolves with what came back before the close (or the timeout). */
export function raw(port: number, request: string | Buffer, options: { halfClose?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket = connectTcp(port, '127.0.0.1');
    let received = '';
    socket.setTimeout(10_000, () => {
      socket.destroy();
      resolve(`${received}<no close within 10 s>`);
    });
    socket.on('data', (data) => (received += data.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(received));
    socket.write(request);
    if (options.halfClose) socket.end();
  });
}
