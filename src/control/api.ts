import { z } from 'zod';
import { errorText, isUserError, RequestError, type Logger } from '../common/index.js';

/** The `schema` field of every reply; docs/schemas/reply.schema.json describes it. */
export const REPLY_SCHEMA = 'linewatch/reply/1';

/** Who asked: logged with every change, and recorded in the model history. */
export type Via = 'http' | 'mqtt' | 'cli' | 'inbox' | 'ui' | 'sparkplug';

/** Who gave a label, as a reference records it: the channel, and the person when it is known (`ui:anna`, `cli:root`). */
export function labeledBy(via: Via, user?: string): string {
  return user ? `${via}:${user}` : via;
}

export interface Command<P = any> {
  name: string;
  /** One line for `linewatch help`-style listings and the HTTP 404 answer. */
  summary: string;
  /** Changes something (needs the token over HTTP). */
  write: boolean;
  params: z.ZodType<P>;
  /** `user`: the person asking, when the channel knows one (the web UI's session, the CLI's OS user). */
  run(params: P, via: Via, user?: string): unknown;
}

export type Reply =
  | { schema: typeof REPLY_SCHEMA; ok: true; result: unknown }
  | { schema: typeof REPLY_SCHEMA; ok: false; error: { code: string; message: string; hint?: string; details?: unknown } };

/** Defines a command with its parameters' schema (the type of `run`'s params follows from it). */
export function command<S extends z.ZodType>(definition: { name: string; summary: string; write: boolean; params: S; run(params: z.output<S>, via: Via, user?: string): unknown }): Command<z.output<S>> {
  return definition as unknown as Command<z.output<S>>;
}

/**
 * The one control API behind the CLI, HTTP, MQTT commands and the web UI: a command by name,
 * its parameters checked against its schema, and a reply that is never a throw.
 */
export class ControlApi {
  private readonly commands = new Map<string, Command>();

  constructor(
    commands: readonly Command[],
    private readonly log: Logger,
  ) {
    for (const c of commands) this.commands.set(c.name, c);
  }

  get names(): string[] {
    return [...this.commands.keys()];
  }

  isWrite(name: string): boolean {
    return this.commands.get(name)?.write ?? true;
  }

  /** Runs a command; every failure, expected or not, becomes an error reply. */
  async call(name: string, params: unknown, via: Via, user?: string): Promise<Reply> {
    const found = this.commands.get(name);
    if (!found) {
      return failure(new RequestError('unknown_command', `unknown command "${name}"`, `commands: ${this.names.join(', ')}`, 404));
    }
    const parsed = found.params.safeParse(params ?? {});
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : 'parameters'}: ${i.message}`);
      return failure(new RequestError('bad_parameters', `${name}: ${problems.join('; ')}`, 'see docs/control.md for the parameters of each command'));
    }
    try {
      const result = await found.run(parsed.data, via, user);
      if (found.write) this.log.info('command', { command: name, via, ...(user ? { user } : {}) });
      return { schema: REPLY_SCHEMA, ok: true, result: result ?? null };
    } catch (err) {
      if (!isUserError(err)) this.log.error('command failed', { command: name, via, error: err instanceof Error ? err.stack : errorText(err) });
      else if (found.write) this.log.warn('command refused', { command: name, via, reason: err.message });
      return failure(err);
    }
  }
}

/** The reply for any thrown value; only a UserError's own words reach the caller. */
export function failure(err: unknown): Reply & { ok: false } {
  if (err instanceof RequestError) {
    return { schema: REPLY_SCHEMA, ok: false, error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}), ...(err.details !== undefined ? { details: err.details } : {}) } };
  }
  if (isUserError(err)) return { schema: REPLY_SCHEMA, ok: false, error: { code: 'refused', message: err.message, ...(err.hint ? { hint: err.hint } : {}) } };
  return { schema: REPLY_SCHEMA, ok: false, error: { code: 'internal', message: 'internal error (logged by the daemon)' } };
}

/** HTTP status of a reply. */
export function replyStatus(reply: Reply): number {
  if (reply.ok) return 200;
  switch (reply.error.code) {
    case 'unknown_command':
    case 'unknown_event':
    case 'unknown_model':
    case 'unknown_reference':
      return 404;
    case 'busy':
    case 'gate_refused':
    case 'already_active':
    case 'version_conflict':
      return 409;
    case 'too_large':
      return 413;
    case 'stopping':
      return 503;
    case 'internal':
      return 500;
    default:
      return 400;
  }
}
