import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, setLogFormat, setLogSink, UserError } from '../../dist/common/index.js';
import { ControlServer, isLoopback, type ControlServerOptions, type HttpRequest, type HttpRoute } from '../../dist/control/index.js';

const token = 'f'.repeat(64);
const auth = { authorization: `Bearer ${token}` };
const logLines: string[] = [];
const seen: HttpRequest[] = [];

const routes: HttpRoute[] = [
  { method: 'GET', path: '/status', access: 'read', handle: () => ({ status: 200, body: JSON.stringify({ ok: true, state: 'running' }) }) },
  {
    method: 'GET',
    path: '/events/:id/image',
    access: 'read',
    handle: (req) => ({ status: 200, type: 'image/jpeg', body: Buffer.from(`jpeg of ${req.params.id}`), headers: { 'Cache-Control': 'private, max-age=60' } }),
  },
  {
    method: 'POST',
    path: '/labels/:id',
    access: 'write',
    handle: (req) => {
      seen.push(req);
      return { status: 200, body: JSON.stringify({ ok: true, id: req.params.id, bytes: req.body.length, as: req.query.get('as') }) };
    },
  },
  { method: 'DELETE', path: '/references/:id', access: 'write', handle: () => Promise.reject(new Error('database exploded')) },
  {
    method: 'POST',
    path: '/classifier',
    access: 'write',
    handle: () => {
      throw new UserError('threshold must be in [0, 1]', 'send a threshold like 0.5');
    },
  },
  {
    method: 'POST',
    path: '/models/:version/activate',
    access: 'write',
    handle: async (req) => {
      throw Object.assign(new UserError(`no model ${req.params.version}`, 'list them with `linewatch model list`'), { status: 404, code: 'no_such_model' });
    },
  },
];

let server: ControlServer | undefined;

async function start(options: Partial<ControlServerOptions> = {}): Promise<ControlServer> {
  server = await ControlServer.listen({ host: '127.0.0.1', port: 0, routes, token, maxBodyBytes: 1 << 20, log: createLogger('test'), ...options });
  return server;
}

/** One raw request over a fresh socket; resolves with everything the server sent before closing. */
function raw(url: string, request: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let received = '';
    // A server that never closes fails the test in seconds rather than at the test timeout.
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no close within 10 s; received ${JSON.stringify(received)}`)));
    socket.on('data', (data) => (received += data.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
    socket.write(request);
  });
}

async function json(response: Response): Promise<{ ok: boolean; error: { code: string; message: string; hint?: string }; [key: string]: unknown }> {
  expect(response.headers.get('content-type')).toBe('application/json');
  expect(response.headers.get('cache-control')).toBe('no-store');
  return (await response.json()) as never;
}

async function stillServes(url: string): Promise<void> {
  const response = await fetch(`${url}/status`);
  expect(response.status).toBe(200);
  expect(await response.json()).toEqual({ ok: true, state: 'running' });
}

beforeAll(() => {
  setLogFormat('json');
  setLogSink({ write: (line) => logLines.push(line) });
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  logLines.length = 0;
  seen.length = 0;
});

describe('ControlServer', () => {
  it('answers 400 to request targets that cannot be parsed, and keeps serving', async () => {
    const { url } = await start();
    for (const target of ['//[', 'http://[', 'http://[::1', '*']) {
      const answer = await raw(url, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(answer, target).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toContain('"code":"bad_request"');
      await stillServes(url);
    }
  });

  it('serves a read from this host without a token, and HEAD without the body', async () => {
    const { url } = await start();
    const get = await fetch(`${url}/status`);
    expect(get.status).toBe(200);
    expect(get.headers.get('cache-control')).toBe('no-store');
    const body = await get.text();

    const head = await fetch(`${url}/status`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(Buffer.byteLength(body)));
    expect(await head.text()).toBe('');
  });

  it('passes percent-decoded path parameters, the query and the body to the route', async () => {
    const { url } = await start();
    const image = await fetch(`${url}/events/01%20ab/image`);
    expect(image.status).toBe(200);
    expect(image.headers.get('content-type')).toBe('image/jpeg');
    expect(image.headers.get('cache-control')).toBe('private, max-age=60'); // the route's header wins, once
    expect(await image.text()).toBe('jpeg of 01 ab');

    const label = await fetch(`${url}/labels/ev-7?as=scratch`, { method: 'POST', headers: auth, body: 'hello' });
    expect(await json(label)).toEqual({ ok: true, id: 'ev-7', bytes: 5, as: 'scratch' });
    expect(seen[0]).toMatchObject({ method: 'POST', path: '/labels/ev-7', remoteAddress: '127.0.0.1' });
    expect(seen[0]!.body.toString()).toBe('hello');

    const bad = await fetch(`${url}/events/%zz/image`);
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.code).toBe('bad_request');
  });

  it('needs the token for writes: 401 without one, 403 for a wrong one, served with the right one', async () => {
    const { url } = await start();
    const without = await fetch(`${url}/labels/1`, { method: 'POST', body: 'x' });
    expect(without.status).toBe(401);
    expect(without.headers.get('www-authenticate')).toBe('Bearer');
    const refusal = await json(without);
    expect(refusal.ok).toBe(false);
    expect(refusal.error.code).toBe('unauthorized');
    expect(refusal.error.hint).toContain('linewatch token');

    const notBearer = await fetch(`${url}/labels/1`, { method: 'POST', body: 'x', headers: { authorization: `Basic ${token}` } });
    expect(notBearer.status).toBe(401);

    const wrong = await fetch(`${url}/labels/1`, { method: 'POST', body: 'x', headers: { authorization: `Bearer ${'e'.repeat(64)}` } });
    expect(wrong.status).toBe(403);
    expect((await json(wrong)).error.code).toBe('forbidden');
    expect(seen).toEqual([]);

    const right = await fetch(`${url}/labels/1`, { method: 'POST', body: 'x', headers: auth });
    expect(right.status).toBe(200);
    expect(seen).toHaveLength(1);
  });

  it('needs the token for reads from another host', async () => {
    const address = Object.values(networkInterfaces())
      .flat()
      .find((info) => info && info.family === 'IPv4' && !info.internal)?.address;
    if (!address) return; // no network here: the address classification below still covers the rule
    const { url } = await start({ host: '0.0.0.0' });
    const remote = url.replace('0.0.0.0', address);
    const without = await fetch(`${remote}/status`);
    expect(without.status).toBe(401);
    expect(without.headers.get('www-authenticate')).toBe('Bearer');
    expect((await fetch(`${remote}/status`, { headers: { authorization: 'Bearer nope' } })).status).toBe(403);
    expect((await fetch(`${remote}/status`, { headers: auth })).status).toBe(200);
    await stillServes(url.replace('0.0.0.0', '127.0.0.1'));
  });

  it('tells loopback addresses from the others, in every notation', () => {
    for (const address of ['127.0.0.1', '127.200.3.4', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::ffff:7f00:1']) expect(isLoopback(address), address).toBe(true);
    for (const address of ['10.0.0.1', '128.0.0.1', '192.0.2.2', '::2', '::ffff:10.0.0.1', 'fe80::1', '', 'localhost']) expect(isLoopback(address), address).toBe(false);
  });

  it('answers 413 at once to a body past the limit and keeps serving', async () => {
    const { url } = await start();
    const big = Buffer.alloc(20 << 20);
    const started = Date.now();
    const declared = await fetch(`${url}/labels/1`, { method: 'POST', headers: auth, body: big });
    expect(declared.status).toBe(413);
    expect((await json(declared)).error.code).toBe('too_large');

    // Chunked: no length up front, so the limit trips while reading.
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 20; i++) controller.enqueue(new Uint8Array(1 << 20));
        controller.close();
      },
    });
    const streamed = await fetch(`${url}/labels/1`, { method: 'POST', headers: auth, body: chunks, duplex: 'half' } as RequestInit);
    expect(streamed.status).toBe(413);
    await streamed.text();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(seen).toEqual([]);

    const small = await fetch(`${url}/labels/1`, { method: 'POST', headers: auth, body: Buffer.alloc(1 << 20) });
    expect(((await small.json()) as { bytes: number }).bytes).toBe(1 << 20);
    await stillServes(url);
  });

  it('refuses a too-large announced body before the client uploads it (Expect: 100-continue)', async () => {
    const { url } = await start();
    const head = `POST /labels/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${20 << 20}\r\nExpect: 100-continue\r\n\r\n`;
    const answer = await raw(url, head);
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).not.toContain('100 Continue');
  });

  it('cuts off a client whose body stalls', async () => {
    const { url } = await start({ timeouts: { headersMs: 500, requestMs: 1_000 } });
    const started = Date.now();
    await raw(url, `POST /labels/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\nonly ten b`);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(seen).toEqual([]);
    await stillServes(url);
  });

  it('answers 500 to a handler that throws, logs it once, and keeps serving', async () => {
    const { url } = await start();
    const response = await fetch(`${url}/references/9`, { method: 'DELETE', headers: auth });
    expect(response.status).toBe(500);
    expect(await json(response)).toEqual({ schema: 'linewatch/reply/1', ok: false, error: { code: 'internal', message: 'internal error' } });
    const errors = logLines.map((line) => JSON.parse(line) as { level: string; error?: { message: string } }).filter((line) => line.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.error?.message).toBe('database exploded');
    await stillServes(url);
  });

  it('answers a UserError with its message and hint, as 400 or the status it carries', async () => {
    const { url } = await start();
    const invalid = await fetch(`${url}/classifier`, { method: 'POST', headers: auth, body: '{}' });
    expect(invalid.status).toBe(400);
    expect(await json(invalid)).toEqual({ schema: 'linewatch/reply/1', ok: false, error: { code: 'bad_request', message: 'threshold must be in [0, 1]', hint: 'send a threshold like 0.5' } });

    const missing = await fetch(`${url}/models/9.9.9/activate`, { method: 'POST', headers: auth });
    expect(missing.status).toBe(404);
    expect((await json(missing)).error).toEqual({ code: 'no_such_model', message: 'no model 9.9.9', hint: 'list them with `linewatch model list`' });
    expect(logLines.filter((line) => line.includes('"level":"error"'))).toEqual([]);
  });

  it('answers 404 listing the routes, and 405 with Allow for a known path and the wrong method', async () => {
    const { url } = await start();
    const unknown = await fetch(`${url}/nope`);
    expect(unknown.status).toBe(404);
    const body = await json(unknown);
    expect(body.error.code).toBe('not_found');
    expect(body.error.details.routes).toEqual(routes.map((route) => `${route.method} ${route.path}`));
    expect((await fetch(`${url}/nope`, { method: 'HEAD' })).status).toBe(404);

    const post = await fetch(`${url}/status`, { method: 'POST', headers: auth });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await json(post)).error.code).toBe('method_not_allowed');

    const get = await fetch(`${url}/labels/1`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
  });

  it('refuses a port in use with the fix', async () => {
    const { url } = await start();
    const port = Number(new URL(url).port);
    await expect(ControlServer.listen({ host: '127.0.0.1', port, routes, token, maxBodyBytes: 1, log: createLogger('test') })).rejects.toMatchObject({
      name: 'UserError',
      hint: expect.stringContaining('set http.port'),
    });
  });
});
