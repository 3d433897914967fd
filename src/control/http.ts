import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BlockList, isIPv4, isIPv6, type AddressInfo } from 'node:net';
import { isUserError, UserError, type Logger } from '../common/index.js';
import { REPLY_SCHEMA } from './api.js';
import { tokenMatches } from './token.js';

export interface HttpRequest {
  method: string;
  path: string;
  /** From the route's `:name` segments, percent-decoded. */
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** Empty for GET and HEAD. */
  body: Buffer;
  remoteAddress: string;
}

export interface HttpAnswer {
  status: number;
  /** Default application/json. */
  type?: string;
  body: string | Buffer;
  headers?: Record<string, string>;
  /**
   * A response that goes on after the head (server-sent events): `body` is sent first, then this
   * writes more until the client leaves (`closed` fires) or the server closes.
   */
  stream?: (write: (chunk: string) => void, closed: AbortSignal) => void;
}

/**
 * Decides a request before its body is read: `allow` lets it through, `token` applies the token
 * rule below, an answer refuses it (the web UI's sessions use this).
 */
export type Authorize = (req: Omit<HttpRequest, 'body'>, route: HttpRoute) => 'allow' | 'token' | HttpAnswer;

export interface HttpRoute {
  method: 'GET' | 'POST' | 'DELETE';
  /** Literal segments and `:name` parameters, e.g. `/events/:id/image`. */
  path: string;
  /** Reads are open from this host; writes, and reads from other hosts, need the token. */
  access: 'read' | 'write';
  handle(req: HttpRequest): HttpAnswer | Promise<HttpAnswer>;
}

export interface ControlServerOptions {
  host: string;
  port: number;
  routes: HttpRoute[];
  token: string;
  /** A larger body is answered 413 and never buffered. */
  maxBodyBytes: number;
  log: Logger;
  /** How long a client may take to send its headers, and its whole request; a stalled client is cut off. */
  timeouts?: { headersMs: number; requestMs: number };
  /** Another way in besides the token (the web UI's sessions); without it, the token rule alone. */
  authorize?: Authorize;
}

// Bundles are a few MB and plant LANs can be slow, so a whole request gets a minute; headers are tiny.
const defaultTimeouts = { headersMs: 20_000, requestMs: 60_000 };

const lingerMs = 1_000;

const tokenHint = 'send `Authorization: Bearer <token>`; `linewatch token` on the device prints it (as the service user or root)';

/** The control API over HTTP; bound to 127.0.0.1 unless configured. */
export class ControlServer {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async listen(options: ControlServerOptions): Promise<ControlServer> {
    const { host, port, log } = options;
    const timeouts = options.timeouts ?? defaultTimeouts;
    const router = new Router(options.routes);
    const server = createServer({
      headersTimeout: timeouts.headersMs,
      requestTimeout: timeouts.requestMs,
      // Node checks the two timeouts above only this often (30 s by default).
      connectionsCheckingInterval: 1_000,
    });
    const serve = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void => {
      answer(options, router, req, res, expectsContinue).catch((err: unknown) => fail(req, res, err, log));
    };
    server.on('request', (req, res) => serve(req, res, false));
    // A client announcing a big body waits for our go-ahead, so a refusal costs it no upload.
    server.on('checkContinue', (req, res) => serve(req, res, true));
    await new Promise<void>((resolve, reject) => {
      const refuse = (err: NodeJS.ErrnoException): void =>
        reject(
          new UserError(
            `cannot serve HTTP on ${host}:${port} (${err.code ?? err.message})`,
            err.code === 'EADDRINUSE' ? 'another process (another linewatch?) uses that port: set http.port, or stop the other one' : 'check http.host and http.port',
          ),
        );
      server.once('error', refuse);
      server.listen(port, host, () => {
        server.off('error', refuse);
        resolve();
      });
    });
    // After listening, an error (e.g. EMFILE on accept) must be logged, not end the daemon.
    server.on('error', (err) => log.error('HTTP server error', { error: err }));
    const address = server.address() as AddressInfo;
    const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return new ControlServer(server, `http://${shownHost}:${address.port}`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** 127.0.0.0/8 and ::1, in any notation, IPv4-mapped (::ffff:127.0.0.1) included. */
export function isLoopback(address: string): boolean {
  if (isIPv4(address)) return loopback.check(address, 'ipv4');
  if (isIPv6(address)) return loopback.check(address, 'ipv6');
  return false;
}

async function answer(options: ControlServerOptions, router: Router, req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> {
  const method = req.method ?? '';
  const target = parseTarget(req.url ?? '');
  if (!target) return send(req, res, errorAnswer(400, 'bad_request', `cannot parse the request target ${JSON.stringify(req.url)}`));
  const found = router.find(method, target.path);
  if (found.kind === 'not found') {
    const body = { schema: REPLY_SCHEMA, ok: false, error: { code: 'not_found', message: `no such path ${target.path}`, details: { routes: router.list() } } };
    return send(req, res, { status: 404, body: JSON.stringify(body) });
  }
  if (found.kind === 'wrong method') {
    const allow = found.allow.join(', ');
    return send(req, res, errorAnswer(405, 'method_not_allowed', `${target.path} takes ${allow}, not ${method}`, undefined, { allow }));
  }
  if (found.kind === 'bad params') return send(req, res, errorAnswer(400, 'bad_request', `cannot decode the path ${target.path}`));

  const remoteAddress = req.socket.remoteAddress ?? '';
  const asked = { method, path: target.path, params: found.params, query: target.query, headers: req.headers, remoteAddress };
  const decided = options.authorize?.(asked, found.route) ?? 'token';
  if (typeof decided === 'object') return send(req, res, decided);
  if (decided === 'token' && (found.route.access === 'write' || !isLoopback(remoteAddress))) {
    const refusal = checkToken(req.headers.authorization, options.token, found.route.access);
    if (refusal) return send(req, res, refusal);
  }

  let body: Buffer = Buffer.alloc(0);
  if (method !== 'GET' && method !== 'HEAD') {
    const read = await readBody(req, res, options.maxBodyBytes, expectsContinue);
    if (read.kind === 'gone') return options.log.debug('control client went away before sending its body', { method, path: target.path });
    if (read.kind === 'too large') return refuseTooLarge(req, res, options.maxBodyBytes);
    body = read.body;
  }

  let result: HttpAnswer;
  try {
    result = await found.route.handle({ ...asked, body });
  } catch (err) {
    if (!isUserError(err)) throw err;
    const { status, code } = err as UserError & { status?: unknown; code?: unknown };
    const shownStatus = typeof status === 'number' && status >= 400 && status <= 599 ? status : 400;
    result = errorAnswer(shownStatus, typeof code === 'string' ? code : codeFor(shownStatus), err.message, err.hint);
  }
  send(req, res, result);
}

// RFC 3986 path and query characters; anything else (`[`, `{`, `"`, raw UTF-8...) must arrive percent-encoded.
const originForm = /^\/[\w\-.~%!$&'()*+,;=:@/]*(?:\?[\w\-.~%!$&'()*+,;=:@/?]*)?$/;

/** Origin-form (`/path?q`) or absolute-form (`http://host/path`) targets; anything else, or unparsable, is undefined. */
function parseTarget(target: string): { path: string; query: URLSearchParams } | undefined {
  try {
    if (target.startsWith('/') && !originForm.test(target)) return undefined;
    // A fixed origin in front keeps `//x` a path, not a host.
    const url = target.startsWith('/') ? new URL(`http://localhost${target}`) : new URL(target);
    if (!url.pathname.startsWith('/')) return undefined;
    return { path: url.pathname, query: url.searchParams };
  } catch {
    return undefined;
  }
}

type Found =
  | { kind: 'route'; route: HttpRoute; params: Record<string, string> }
  | { kind: 'not found' }
  | { kind: 'wrong method'; allow: string[] }
  | { kind: 'bad params' };

class Router {
  private readonly routes: { route: HttpRoute; segments: string[] }[];

  constructor(routes: HttpRoute[]) {
    this.routes = routes.map((route) => ({ route, segments: route.path.split('/') }));
  }

  /** The first route whose path and method match; HEAD is served by the GET route. */
  find(method: string, path: string): Found {
    const wanted = method === 'HEAD' ? 'GET' : method;
    const segments = path.split('/');
    const allow = new Set<string>();
    for (const { route, segments: pattern } of this.routes) {
      const raw = matchSegments(pattern, segments);
      if (!raw) continue;
      if (route.method !== wanted) {
        allow.add(route.method);
        if (route.method === 'GET') allow.add('HEAD');
        continue;
      }
      const params: Record<string, string> = {};
      try {
        for (const [name, value] of Object.entries(raw)) params[name] = decodeURIComponent(value);
      } catch {
        return { kind: 'bad params' };
      }
      return { kind: 'route', route, params };
    }
    return allow.size > 0 ? { kind: 'wrong method', allow: [...allow] } : { kind: 'not found' };
  }

  list(): string[] {
    return this.routes.map(({ route }) => `${route.method} ${route.path}`);
  }
}

function matchSegments(pattern: string[], segments: string[]): Record<string, string> | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, part] of pattern.entries()) {
    const segment = segments[i] as string;
    if (part.startsWith(':')) {
      if (segment === '') return undefined;
      params[part.slice(1)] = segment;
    } else if (part !== segment) return undefined;
  }
  return params;
}

/** A refusal, or undefined when the request carries the right token. */
function checkToken(authorization: string | undefined, token: string, access: HttpRoute['access']): HttpAnswer | undefined {
  const presented = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
  if (presented === undefined) {
    const message = access === 'write' ? 'changes need the control token' : 'requests from other hosts need the control token';
    return errorAnswer(401, 'unauthorized', message, tokenHint, { 'www-authenticate': 'Bearer' });
  }
  if (!tokenMatches(token, presented)) return errorAnswer(403, 'forbidden', 'wrong control token', tokenHint);
  return undefined;
}

type Body = { kind: 'body'; body: Buffer } | { kind: 'too large' } | { kind: 'gone' };

/** Reads at most `limit` bytes: past it, reading stops at once and nothing more is kept. */
function readBody(req: IncomingMessage, res: ServerResponse, limit: number, expectsContinue: boolean): Promise<Body> {
  if (Number(req.headers['content-length'] ?? 0) > limit) return Promise.resolve({ kind: 'too large' });
  if (expectsContinue) res.writeContinue();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (result: Body): void => {
      req.off('data', onData).off('end', onEnd).off('close', onGone).off('error', onGone);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        settle({ kind: 'too large' });
      } else chunks.push(chunk);
    };
    const onEnd = (): void => settle({ kind: 'body', body: Buffer.concat(chunks, size) });
    // A client that hangs up, or is cut off by requestTimeout, ends the read with a close and no end.
    const onGone = (): void => settle({ kind: 'gone' });
    req.on('data', onData).on('end', onEnd).on('close', onGone).on('error', onGone);
  });
}

/**
 * 413, then the connection ends: nothing more of the body is kept. Closing at once with the upload
 * still arriving makes the kernel send a reset that can destroy the 413 before the client reads it,
 * so the connection lingers a moment (discarding what is in flight) and then is cut.
 */
function refuseTooLarge(req: IncomingMessage, res: ServerResponse, limit: number): void {
  const socket = req.socket;
  res.once('finish', () => {
    socket.end();
    const linger = setTimeout(() => socket.destroy(), lingerMs);
    socket.once('close', () => clearTimeout(linger));
  });
  send(req, res, errorAnswer(413, 'too_large', `the request body is larger than ${limit} bytes`, 'send a smaller body, or raise control.maxPayloadBytes'));
}

function send(req: IncomingMessage, res: ServerResponse, answer: HttpAnswer): void {
  const body = typeof answer.body === 'string' ? Buffer.from(answer.body) : answer.body;
  // Lower-cased so a handler's `Content-Type` replaces the default instead of being sent twice.
  const extra = Object.fromEntries(Object.entries(answer.headers ?? {}).map(([name, value]) => [name.toLowerCase(), value]));
  res.writeHead(answer.status, {
    'content-type': answer.type ?? 'application/json',
    // Status and commands change from one moment to the next; nothing here may be served from a cache.
    'cache-control': 'no-store',
    ...extra,
    // A stream has no length known in advance: it is sent chunked.
    ...(answer.stream ? {} : { 'content-length': body.length }),
  });
  if (!answer.stream || req.method === 'HEAD') return void res.end(req.method === 'HEAD' ? undefined : body);
  res.write(body);
  const closed = new AbortController();
  res.once('close', () => closed.abort());
  answer.stream((chunk) => void (res.writableEnded || res.write(chunk)), closed.signal);
}

function fail(req: IncomingMessage, res: ServerResponse, err: unknown, log: Logger): void {
  log.error('control request failed', { method: req.method, url: req.url, error: err, stack: err instanceof Error ? err.stack : undefined });
  try {
    // A handler answer that writeHead refused may have left some of its headers set.
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    send(req, res, errorAnswer(500, 'internal', 'internal error'));
  } catch {
    // Headers already went out (or the socket is gone): cutting the connection is the only honest end.
    res.destroy();
  }
}

function errorAnswer(status: number, code: string, message: string, hint?: string, headers?: Record<string, string>): HttpAnswer {
  // The same reply shape as every command's (docs/schemas/reply.schema.json).
  return { status, body: JSON.stringify({ schema: REPLY_SCHEMA, ok: false, error: { code, message, ...(hint ? { hint } : {}) } }), ...(headers ? { headers } : {}) };
}

const codes: Record<number, string> = { 400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 409: 'conflict', 413: 'too_large', 422: 'invalid', 503: 'unavailable' };

function codeFor(status: number): string {
  return codes[status] ?? 'error';
}
