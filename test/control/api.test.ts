import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RequestError, UserError, type Logger } from '../../dist/common/index.js';
import { command, ControlApi, replyStatus, type Reply } from '../../dist/control/index.js';

// The control API on small real commands: parsing, replies and logging, with no daemon behind it.
interface Logged {
  level: string;
  msg: string;
  fields: Record<string, unknown> | undefined;
}

function recorder(): { log: Logger; lines: Logged[] } {
  const lines: Logged[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push({ level, msg, fields });
  const log: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return { log, lines };
}

const commands = [
  command({ name: 'status', summary: 'what runs', write: false, params: z.object({}).strict(), run: () => ({ state: 'running' }) }),
  command({ name: 'classifier.set', summary: 'change k', write: true, params: z.object({ k: z.number().int().min(1), label: z.string().optional() }).strict(), run: ({ k }) => ({ k }) }),
  command({ name: 'roi.set', summary: 'a nested parameter', write: true, params: z.object({ roi: z.object({ x: z.number() }) }), run: ({ roi }) => roi }),
  command({ name: 'nothing', summary: 'returns nothing', write: false, params: z.object({}), run: () => undefined }),
  command({ name: 'refuse', summary: 'a user error', write: true, params: z.object({}), run: () => { throw new UserError('the model is busy', 'try again in a minute'); } }),
  command({ name: 'refuse.plain', summary: 'a user error without a hint', write: false, params: z.object({}), run: () => { throw new UserError('no such thing'); } }),
  command({ name: 'gate', summary: 'a request error', write: true, params: z.object({}), run: () => { throw new RequestError('gate_refused', 'accuracy fell', 'push with force', 409, { before: 0.9, after: 0.5 }); } }),
  command({ name: 'crash', summary: 'a bug', write: true, params: z.object({}), run: () => { throw new TypeError('x is undefined'); } }),
  command({ name: 'crash.async', summary: 'a bug, later', write: false, params: z.object({}), run: async () => { throw new Error('later'); } }),
];

describe('ControlApi', () => {
  it('lists the commands and says which change something (an unknown one counts as a write)', () => {
    const api = new ControlApi(commands, recorder().log);
    expect(api.names).toEqual(commands.map((c) => c.name));
    expect(api.isWrite('status')).toBe(false);
    expect(api.isWrite('classifier.set')).toBe(true);
    expect(api.isWrite('no.such')).toBe(true);
  });

  it('answers an unknown command with its name and the list of commands', async () => {
    const reply = await new ControlApi(commands, recorder().log).call('reboot', {}, 'http');
    // Strict: no `details: undefined` key either.
    expect(reply).toStrictEqual({
      schema: 'linewatch/reply/1',
      ok: false,
      error: { code: 'unknown_command', message: 'unknown command "reboot"', hint: `commands: ${commands.map((c) => c.name).join(', ')}` },
    });
    expect(replyStatus(reply)).toBe(404);
  });

  it('names each bad parameter by its path, or "parameters" for the whole object', async () => {
    const api = new ControlApi(commands, recorder().log);
    const bad = await api.call('classifier.set', { k: 0, label: 3 }, 'mqtt');
    expect(bad).toMatchObject({ ok: false, error: { code: 'bad_parameters', hint: 'see docs/control.md for the parameters of each command' } });
    const message = (bad as Reply & { ok: false }).error.message;
    expect(message).toMatch(/^classifier\.set: k: .+; label: .+$/);
    expect(replyStatus(bad)).toBe(400);
    expect((await api.call('classifier.set', 'k=3', 'mqtt')) as Reply & { ok: false }).toMatchObject({ error: { message: expect.stringMatching(/^classifier\.set: parameters: /) } });
    expect((await api.call('roi.set', { roi: { x: 'left' } }, 'http')) as Reply & { ok: false }).toMatchObject({ error: { message: expect.stringMatching(/^roi\.set: roi\.x: /) } });
    // No parameters at all are an empty object.
    expect(await api.call('status', undefined, 'cli')).toEqual({ schema: 'linewatch/reply/1', ok: true, result: { state: 'running' } });
    expect(await api.call('status', null, 'cli')).toMatchObject({ ok: true });
  });

  it('logs a change with who asked, and not a read; a missing result is null', async () => {
    const { log, lines } = recorder();
    const api = new ControlApi(commands, log);
    expect(await api.call('classifier.set', { k: 3 }, 'mqtt')).toEqual({ schema: 'linewatch/reply/1', ok: true, result: { k: 3 } });
    expect(await api.call('status', {}, 'http')).toMatchObject({ ok: true });
    expect(await api.call('nothing', {}, 'http')).toEqual({ schema: 'linewatch/reply/1', ok: true, result: null });
    expect(lines).toEqual([{ level: 'info', msg: 'command', fields: { command: 'classifier.set', via: 'mqtt' } }]);
  });

  it('replies with a user error\'s own words, and logs a refused change as a warning', async () => {
    const { log, lines } = recorder();
    const api = new ControlApi(commands, log);
    const refused = await api.call('refuse', {}, 'ui');
    expect(refused).toEqual({ schema: 'linewatch/reply/1', ok: false, error: { code: 'refused', message: 'the model is busy', hint: 'try again in a minute' } });
    expect(replyStatus(refused)).toBe(400);
    expect(await api.call('refuse.plain', {}, 'ui')).toEqual({ schema: 'linewatch/reply/1', ok: false, error: { code: 'refused', message: 'no such thing' } });
    expect(lines).toEqual([{ level: 'warn', msg: 'command refused', fields: { command: 'refuse', via: 'ui', reason: 'the model is busy' } }]);
  });

  it('keeps a request error\'s code, hint and details', async () => {
    const reply = await new ControlApi(commands, recorder().log).call('gate', {}, 'http');
    expect(reply).toEqual({ schema: 'linewatch/reply/1', ok: false, error: { code: 'gate_refused', message: 'accuracy fell', hint: 'push with force', details: { before: 0.9, after: 0.5 } } });
    expect(replyStatus(reply)).toBe(409);
  });

  it('hides a bug behind "internal error" and logs its stack, sync or async', async () => {
    const { log, lines } = recorder();
    const api = new ControlApi(commands, log);
    for (const name of ['crash', 'crash.async']) {
      const reply = await api.call(name, {}, 'http');
      expect(reply).toEqual({ schema: 'linewatch/reply/1', ok: false, error: { code: 'internal', message: 'internal error (logged by the daemon)' } });
      expect(replyStatus(reply)).toBe(500);
    }
    expect(lines.map((l) => [l.level, l.msg, l.fields?.['command']])).toEqual([
      ['error', 'command failed', 'crash'],
      ['error', 'command failed', 'crash.async'],
    ]);
    expect(String(lines[0]!.fields?.['error'])).toMatch(/^TypeError: x is undefined\n\s+at /);
  });
});

describe('replyStatus', () => {
  const status = (code: string) => replyStatus({ schema: 'linewatch/reply/1', ok: false, error: { code, message: '' } });
  it.each([
    ['unknown_command', 404],
    ['unknown_event', 404],
    ['unknown_model', 404],
    ['unknown_reference', 404],
    ['busy', 409],
    ['gate_refused', 409],
    ['already_active', 409],
    ['version_conflict', 409],
    ['too_large', 413],
    ['stopping', 503],
    ['internal', 500],
    ['bad_parameters', 400],
    ['refused', 400],
  ])('%s is HTTP %i', (code, http) => {
    expect(status(code)).toBe(http);
  });
  it('is 200 for a success', () => {
    expect(replyStatus({ schema: 'linewatch/reply/1', ok: true, result: null })).toBe(200);
  });
});
