import { createHash } from 'node:crypto';
import { z } from 'zod';
import { RequestError } from '../common/index.js';
import { labelSchema as label } from '../common/label-schema.js';
import type { AnomalyImages } from '../events/index.js';
import type { OverrideStore, ReferenceFilter, ReferenceStore } from '../knn/index.js';
import { embedItem, enroll, type ModelManager } from '../models/index.js';
import { command, labeledBy, type Command } from './api.js';

/** What the commands act on: the daemon's modules, handed over by the composition root. */
export interface ControlTarget {
  status(): unknown;
  models: ModelManager;
  store: ReferenceStore;
  overrides: OverrideStore;
  images: AnomalyImages;
  /** Applies the persisted classifier overrides to the models in force. */
  applyOverrides(): void;
  /** Reads the configuration file again (as SIGHUP does); returns what changed. */
  reload(): Promise<unknown>;
}

const base64 = (what: string) =>
  z
    .string()
    .min(1)
    .regex(/^[A-Za-z0-9+/=\r\n_-]+$/, `${what} must be base64`)
    .transform((s) => Buffer.from(s, 'base64'));
// No regex flags here or below: a JSON Schema pattern (docs/schemas/commands.schema.json) cannot carry them.
const eventId = z.string().regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'an event id (a UUID, as in the event)');
const nothing = z.strictObject({});
const hours = z.number().positive().max(1_000_000);
/** Which references a list, prune or export takes: by label, source and age. */
const referenceFilter = {
  label: label.optional(),
  source: z.enum(['human', 'auto', 'peer']).optional(),
  olderThanH: hours.optional().describe('created more than this many hours ago'),
  newerThanH: hours.optional().describe('created less than this many hours ago'),
};

function toFilter(p: { label?: string | undefined; source?: ReferenceFilter['source'] | undefined; olderThanH?: number | undefined; newerThanH?: number | undefined }): ReferenceFilter {
  const now = Date.now();
  return {
    ...(p.label !== undefined && { label: p.label }),
    ...(p.source !== undefined && { source: p.source }),
    ...(p.olderThanH !== undefined && { createdBefore: now - p.olderThanH * 3_600_000 }),
    ...(p.newerThanH !== undefined && { createdAfter: now - p.newerThanH * 3_600_000 }),
  };
}

/** References one export holds at most (each carries its image): beyond it, narrow the filter. */
const exportLimit = 10_000;

/** The commands of the control API; docs/control.md documents each. */
export function controlCommands(target: ControlTarget): Command[] {
  const { models, store, overrides, images } = target;
  return [
    command({ name: 'status', summary: 'the daemon status', write: false, params: nothing, run: () => target.status() }),

    command({
      name: 'classifier.set',
      summary: 'set k, threshold or unknownDistance (null clears); persisted, overrides the file',
      write: true,
      params: z
        .strictObject({
          k: z.number().int().min(1).max(1000).nullable().optional(),
          threshold: z.number().min(0).max(1).nullable().optional(),
          unknownDistance: z.number().min(0).max(2).nullable().optional(),
        })
        .refine((p) => Object.keys(p).length > 0, 'give at least one of k, threshold, unknownDistance')
        // The refinement as JSON Schema says it (z.toJSONSchema cannot translate a refine).
        .meta({ minProperties: 1 }),
      run: (params, via) => {
        const now = overrides.set(params, via);
        target.applyOverrides();
        return { settings: { ...models.active.classifier.settings }, overrides: now };
      },
    }),

    command({
      name: 'enroll',
      summary: 'add an image (base64) as a reference with a label',
      write: true,
      params: z.strictObject({ label, image: base64('image'), name: z.string().min(1).max(4096).optional() }),
      run: async ({ label, image, name }, via, user) => {
        // Its name (a file path, as `linewatch enroll` gives it) or else its digest names it:
        // enrolling the same image twice adds it once, through the daemon or into its database alike.
        const origin = name ?? `upload:${createHash('sha256').update(image).digest('hex').slice(0, 16)}`;
        const result = await enroll([{ path: origin, label, data: image }], models.active, store, { labeledBy: labeledBy(via, user) });
        const skipped = result.skipped[0];
        if (skipped) throw new RequestError('bad_image', `the image cannot be used: ${skipped.reason}`, 'send a JPEG or PNG of the item');
        return { added: result.added, alreadyEnrolled: result.alreadyEnrolled, referenceIds: result.ids, model: models.active.key };
      },
    }),

    command({
      name: 'label',
      summary: "make an anomaly's item a human reference with this label, at once",
      write: true,
      params: z.strictObject({ event: eventId, label }),
      run: async ({ event, label }, via, user) => {
        const kept = images.get(event);
        if (!kept) {
          throw new RequestError('unknown_event', `no image is kept for event ${event}`, 'check the id; images of old events are removed by retention (images.*)', 404);
        }
        const model = models.active;
        // Decided by another model: embed the kept item with the one in force.
        const vector = kept.modelKey === model.key ? kept.vector : await embedItem(model, kept.image);
        const origin = `event:${event}`;
        const replaced = store.idsOfOrigin(origin);
        const referenceId = store.db.transaction(() => {
          store.removeMany(replaced);
          return store.add({ label, source: 'human', origin, thumbnail: kept.image, labeledBy: labeledBy(via, user) }, model.key, vector);
        })();
        for (const id of replaced) model.index.remove(id);
        model.index.add(referenceId, vector);
        return { referenceId, label, event, replaced, model: model.key };
      },
    }),

    command({
      name: 'reference.remove',
      summary: 'remove references by id',
      write: true,
      params: z.strictObject({ ids: z.array(z.number().int().positive()).min(1).max(10_000) }),
      run: ({ ids }) => {
        const removed = store.removeMany(ids);
        for (const id of ids) models.active.index.remove(id);
        if (removed === 0) throw new RequestError('unknown_reference', `no reference with id ${ids.join(', ')}`, 'linewatch status lists the references by label', 404);
        return { removed };
      },
    }),

    command({
      name: 'reference.list',
      summary: 'list references with their provenance, newest first, by label, source and age',
      write: false,
      params: z.strictObject({ ...referenceFilter, limit: z.number().int().min(1).max(1000).optional(), offset: z.number().int().nonnegative().optional() }),
      run: ({ limit, offset, ...filter }) => {
        const where = toFilter(filter);
        return { total: store.countWhere(where), references: store.list({ ...where, limit: limit ?? 100, offset: offset ?? 0 }) };
      },
    }),

    command({
      name: 'reference.prune',
      summary: 'remove every reference of a label, source or age',
      write: true,
      params: z
        .strictObject(referenceFilter)
        .refine((p) => Object.keys(p).length > 0, 'give at least one of label, source, olderThanH, newerThanH (pruning everything is not a prune)')
        .meta({ minProperties: 1 }),
      run: (filter) => {
        const ids = store.idsWhere(toFilter(filter));
        const removed = store.removeMany(ids);
        for (const id of ids) models.active.index.remove(id);
        return { removed, ids };
      },
    }),

    command({
      name: 'reference.export',
      summary: 'references with provenance, image and vector (base64), by label, source and age',
      write: false,
      params: z.strictObject(referenceFilter),
      run: (filter) => {
        const where = toFilter(filter);
        const total = store.countWhere(where);
        if (total > exportLimit) {
          throw new RequestError('too_large', `${total} references match; an export holds at most ${exportLimit}`, 'narrow it by label, source or age', 413);
        }
        const model = models.active;
        const infos = store.list({ ...where, limit: exportLimit });
        const vectors = store.loadVectors(model.key, model.index.dimension, infos.map((r) => r.id));
        const vectorOf = new Map(vectors.ids.map((id, i) => [id, vectors.data.subarray(i * model.index.dimension, (i + 1) * model.index.dimension)]));
        const references = infos.map((info) => {
          const vector = vectorOf.get(info.id);
          return {
            ...info,
            image: store.get(info.id)?.thumbnail?.toString('base64') ?? null,
            vector: vector ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64') : null,
          };
        });
        return { model: model.key, dimension: model.index.dimension, references };
      },
    }),

    command({
      name: 'model.push',
      summary: 'install a signed bundle archive (base64 .tar.gz): verify, re-embed, gate, swap',
      write: true,
      params: z.strictObject({ bundle: base64('bundle'), force: z.boolean().optional() }),
      run: ({ bundle, force }, via) => models.push(bundle, { force: force ?? false, via }),
    }),
    command({
      name: 'model.activate',
      summary: 'make an installed version active',
      write: true,
      params: z.strictObject({ key: z.string().min(1) }),
      run: ({ key }, via) => models.activate(key, { via }),
    }),
    command({ name: 'model.rollback', summary: 'bring the previous model back', write: true, params: nothing, run: (_, via) => models.rollback({ via }) }),
    command({ name: 'model.list', summary: 'installed versions, the active one, the history', write: false, params: nothing, run: () => models.list() }),
    command({ name: 'reload', summary: 'read the configuration file again (as SIGHUP)', write: true, params: nothing, run: () => target.reload() }),
  ];
}
