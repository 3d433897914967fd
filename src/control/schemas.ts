import { z } from 'zod';
import { controlCommands, type ControlTarget } from './commands.js';

/** The `$id` of docs/schemas/commands.schema.json (an identifier; nothing fetches it). */
export const COMMANDS_SCHEMA_ID = 'https://linewatch.dev/schemas/commands.schema.json';

/**
 * The JSON Schema (draft 2020-12) of every command's parameters, one `$defs` entry per command
 * name, generated from the zod schemas the control API checks requests with, so the two cannot
 * drift. docs/schemas/commands.schema.json is this object; `npm run schemas` writes it.
 */
export function commandSchemas(): object {
  const defs: Record<string, object> = {};
  for (const c of controlCommands(noTarget)) {
    // Requests are what a caller sends: the input side of transforms (base64 text, not a Buffer).
    const params: Record<string, unknown> = z.toJSONSchema(c.params, { io: 'input', target: 'draft-2020-12' });
    // `$schema` belongs at the root only.
    delete params['$schema'];
    defs[c.name] = { title: c.name, description: c.write ? `${c.summary}. Changes the daemon.` : `${c.summary}. Reads only.`, ...params };
  }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: COMMANDS_SCHEMA_ID,
    title: 'linewatch control command parameters',
    description:
      'The JSON parameters of a control command: the payload of an MQTT 5 request on <topicRoot>cmd/<name>, or the body of POST /control/<name>. ' +
      'Validate them against $defs/<name>. Generated from src/control/commands.ts by `npm run schemas`; do not edit.',
    $defs: defs,
  };
}

/** Listing the commands needs no daemon: a command touches its target only when it runs, which this one refuses. */
const refuse = (): never => {
  throw new Error('commandSchemas: commands were listed without a daemon and cannot run');
};
const unusable: unknown = new Proxy(() => undefined, { get: refuse, apply: refuse });
const noTarget = new Proxy({}, { get: () => unusable }) as ControlTarget;
