import { request } from 'node:http';
import { userInfo } from 'node:os';
import { createLogger, errorText, UserError } from '../common/index.js';
import type { Config } from '../config/index.js';
import { readToken, type Reply } from '../control/index.js';
import { tokenPath, withOfflineControl } from '../daemon/index.js';

/** A command's reply, and whether the running daemon gave it (false: the database of a stopped one). */
export interface DaemonAnswer {
  running: boolean;
  reply: Reply;
}

const commandTimeoutMs = 10_000;
// Staging a pushed model re-embeds every reference before the gate: minutes on a big store.
const pushTimeoutMs = 10 * 60_000;

/** The daemon's HTTP address, IPv6 hosts in brackets. */
export function daemonUrl(config: Config): string {
  const host = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host;
  return `http://${host}:${config.http.port}`;
}

/**
 * Runs a control command on the running daemon (POST /control/<name>), or, when none answers,
 * on the database of the stopped one, so the change is in force at its next start.
 */
export async function callDaemon(config: Config, name: string, params: unknown): Promise<DaemonAnswer> {
  return answerOrOffline(config, await askDaemon(config, name, params), name, params);
}

/** Sends a bundle archive (.tar or .tar.gz) as is: POST /models on the running daemon, else into its database. */
export async function pushModel(config: Config, archive: Buffer, force: boolean): Promise<DaemonAnswer> {
  const reply = await send(config, `/models${force ? '?force=1' : ''}`, archive, 'application/octet-stream', pushTimeoutMs);
  return answerOrOffline(config, reply, 'model.push', { bundle: archive.toString('base64'), ...(force ? { force } : {}) });
}

/** The running daemon's reply to a command, or undefined when no daemon answers (not running, or HTTP off). */
export function askDaemon(config: Config, name: string, params: unknown): Promise<Reply | undefined> {
  return send(config, `/control/${encodeURIComponent(name)}`, Buffer.from(JSON.stringify(params ?? {})), 'application/json', commandTimeoutMs);
}

async function answerOrOffline(config: Config, reply: Reply | undefined, name: string, params: unknown): Promise<DaemonAnswer> {
  if (reply) return { running: true, reply };
  return { running: false, reply: await withOfflineControl(config, createLogger('control'), (api) => api.call(name, params, 'cli', osUser())) };
}

/** The OS user running the CLI: a label's `labeledBy` names them (`cli:<user>`); undefined when the system has no name for it. */
export function osUser(): string | undefined {
  try {
    return userInfo().username || undefined;
  } catch {
    return undefined;
  }
}

function userHeader(): Record<string, string> {
  const user = osUser();
  return user ? { 'x-linewatch-user': user } : {};
}

async function send(config: Config, path: string, body: Buffer, type: string, timeoutMs: number): Promise<Reply | undefined> {
  // Port 0 means a port chosen at start: no client can know it, so no daemon is reachable.
  if (!config.http.enabled || config.http.port === 0) return undefined;
  const url = daemonUrl(config) + path;
  let token: string | undefined;
  let tokenProblem: UserError | undefined;
  try {
    token = readToken(tokenPath(config));
  } catch (err) {
    // Only a running daemon needs the token: a stopped one is changed through its database.
    if (!(err instanceof UserError)) throw err;
    tokenProblem = err;
  }
  const answer = await post(url, body, { 'content-type': type, 'x-linewatch-client': 'cli', ...userHeader(), ...(token ? { authorization: `Bearer ${token}` } : {}) }, timeoutMs);
  if (answer === 'refused') return undefined;
  if (answer.status === 401 && tokenProblem) {
    throw new UserError(`linewatch is running, but this user cannot use its control token: ${tokenProblem.message}`, `run as root or as the service user: sudo linewatch ${process.argv.slice(2).join(' ')}`);
  }
  try {
    const reply = JSON.parse(answer.body) as Reply;
    if (typeof reply.ok === 'boolean') return reply;
  } catch {
    // Not JSON: reported below.
  }
  throw new UserError(`something else answers at ${url} (HTTP ${answer.status}, not a linewatch reply)`, 'check http.host and http.port in the configuration');
}

function post(url: string, body: Buffer, headers: Record<string, string>, timeoutMs: number): Promise<{ status: number; body: string } | 'refused'> {
  // node:http rather than fetch: fetch gives up on a reply after 5 minutes, and staging a model may take longer.
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-length': String(body.length) }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err) => reject(new UserError(`the answer of linewatch at ${url} broke off (${errorText(err)})`, 'try again; the daemon log says why')));
    });
    req.on('timeout', () =>
      req.destroy(new UserError(`linewatch at ${url} did not answer within ${timeoutMs / 1000} s`, 'linewatch status shows what it is doing; its log (journalctl -u linewatch) says why')),
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof UserError) reject(err);
      else if (err.code === 'ECONNREFUSED') resolve('refused');
      else reject(new UserError(`cannot reach linewatch at ${url} (${err.code ?? err.message})`, 'check http.host and http.port in the configuration'));
    });
    req.end(body);
  });
}
