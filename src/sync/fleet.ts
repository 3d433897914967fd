import { errorText, type Logger } from '../common/index.js';
import type { ReferenceStore } from '../knn/index.js';
import { embedItem, thumbnailSide, type ModelRuntime } from '../models/index.js';
import { isConnectionClosed, type Connection, type MqttSession } from '../mqtt/index.js';
import { thumbnail } from '../preprocess/index.js';
import type { Db } from '../storage/index.js';
import { SyncLedger, type PublishRow } from './ledger.js';
import { decodeFleetMessage, encodeDeleted, encodeShared, type FleetMessage, type Refusal, type SharedReference } from './message.js';
import { fleetFilter, fleetId, fleetTopic, parseFleetTopic } from './topics.js';

export interface FleetSettings {
  site: string;
  /** This device's level in the fleet topics: what the broker's ACL binds to its identity. */
  deviceId: string;
  /** Sites besides its own whose references it imports. */
  trustedSites: readonly string[];
  /** Which of its own references it shares. */
  share: readonly ('human' | 'auto')[];
  maxPeerReferences: number;
  /** learning's caps, which peers' automatic references stay within as this device's own do. */
  automatic: { perLabelTotal: number; maxAutoShare: number };
  maxMessageBytes: number;
  /** Lifetime of a retained tombstone at the broker (MQTT 5 message expiry). */
  tombstoneDays: number;
}

export interface FleetSyncStatus {
  deviceId: string;
  /** Sites it imports from (its own first). */
  sites: string[];
  /** Its own references shared, their tombstones, and rows the broker has not acknowledged yet. */
  shared: number;
  tombstones: number;
  pending: number;
  /** Peer references in the store. */
  peers: number;
  /** Since start: messages the broker acknowledged, references imported, deletions applied, copies already held, refusals by reason. */
  published: number;
  tombstonesPublished: number;
  imported: number;
  deletionsApplied: number;
  duplicates: number;
  refused: Partial<Record<Refusal, number>>;
  lastImportAt: string | null;
  /** Why sharing is stuck (the broker refused a publish), or null. */
  lastError: string | null;
}

/**
 * Bytes of messages waiting to be imported (a device joining gets the whole fleet at once, about
 * 2.2 kB a reference); past this they are refused as `busy` and asked for again once the queue is empty.
 */
const maxQueuedBytes = 64 * 1024 * 1024;
/** Publishes in flight at once. */
const window = 32;
/** At most one log line per this many ms for refused messages (a flood must not flood the journal). */
const refusalLogIntervalMs = 60_000;
/** Changes are compared in one pass after this pause, not one pass per change. */
const reconcileDelayMs = 100;

/**
 * Fleet sync of references over the device's MQTT session. It publishes this device's own
 * references (one retained message each; a tombstone replaces a deleted one) and imports the
 * references of the devices of its site (and trusted sites) as source `peer`: idempotent by fleet
 * id, within `maxPeerReferences`, re-embedded from the image when they come from another model.
 * Peer references are never shared again, so nothing echoes.
 */
export class FleetSync {
  private readonly ledger: SyncLedger;
  private readonly sites: Set<string>;
  private session: MqttSession | null = null;
  private detach: (() => void)[] = [];
  private readonly unfollow: (() => void)[];
  private readonly queue: { message: FleetMessage; bytes: number }[] = [];
  private queuedBytes = 0;
  private importing = false;
  private overflowed = false;
  private pumping = false;
  private pumpAgain = false;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private peers = 0;
  private readonly counts = { published: 0, tombstonesPublished: 0, imported: 0, deletionsApplied: 0, duplicates: 0 };
  private readonly refused: Partial<Record<Refusal, number>> = {};
  private lastImportAt: number | null = null;
  private lastError: string | null = null;
  private refusalsLoggedAt = 0;
  private refusalsUnlogged = 0;

  constructor(
    private readonly db: Db,
    private readonly store: ReferenceStore,
    private readonly models: { readonly active: ModelRuntime },
    private readonly settings: FleetSettings,
    private readonly log: Logger,
  ) {
    this.ledger = new SyncLedger(db);
    this.sites = new Set([settings.site, ...settings.trustedSites]);
    // The store tells of every change, by anyone (a label, an enrollment, self-training, a removal);
    // the sync takes it only as a hint to compare the store with what it shares, so a missed or repeated call is harmless.
    this.unfollow = [store.onChange(() => this.scheduleReconcile())];
    this.ledger.republishLive();
    this.reconcile();
  }

  /** Rides on `session`: subscribes to the fleet of each trusted site and publishes on every connection. */
  attach(session: MqttSession): void {
    this.detachSession();
    this.session = session;
    this.subscribe();
    this.detach.push(session.onReady(() => void this.pump()));
  }

  /** Leaves the session (a reload builds a new one); what is shared stays recorded. */
  detachSession(): void {
    for (const undo of this.detach.splice(0)) undo();
    this.session = null;
  }

  close(): void {
    this.detachSession();
    for (const undo of this.unfollow) undo();
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
  }

  status(): FleetSyncStatus {
    return {
      deviceId: this.settings.deviceId,
      sites: [...this.sites],
      ...this.ledger.counts(),
      peers: this.peers,
      ...this.counts,
      refused: { ...this.refused },
      lastImportAt: this.lastImportAt === null ? null : new Date(this.lastImportAt).toISOString(),
      lastError: this.lastError,
    };
  }

  private subscribe(): void {
    for (const site of this.sites) this.detach.push(this.session!.subscribe(fleetFilter(site), this.receive));
  }

  private scheduleReconcile(): void {
    this.reconcileTimer ??= setTimeout(() => {
      this.reconcileTimer = null;
      this.reconcile();
    }, reconcileDelayMs);
  }

  private reconcile(): void {
    const { site, deviceId: device, share } = this.settings;
    const modelKey = this.models.active.key;
    const changed = this.ledger.reconcile(share, (id) => ({ fleetId: fleetId(device, id), topic: fleetTopic({ site, modelKey, device, localId: id }) }));
    this.peers = this.ledger.peerReferences();
    if (changed > 0) void this.pump();
  }

  // ---- sharing ----

  /** Publishes every row the broker has not acknowledged, `window` at a time, until none is left or the connection goes. */
  private async pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        let after = 0;
        for (;;) {
          const connection = this.session?.connection;
          if (!connection) return;
          const rows = this.ledger.pending(window, after);
          if (rows.length === 0) break;
          after = rows[rows.length - 1]!.referenceId;
          const outcomes = await Promise.all(rows.map((row) => this.publish(connection, row)));
          if (outcomes.includes('stop')) return;
        }
      } while (this.pumpAgain);
    } catch (err) {
      this.log.error('sharing fleet references failed', { error: errorText(err) });
    } finally {
      this.pumping = false;
    }
  }

  private async publish(connection: Connection, row: PublishRow): Promise<'sent' | 'later' | 'stop'> {
    const payload = row.deleted ? this.tombstone(row) : await this.shared(row);
    if (payload === null) return 'later';
    const expiry = row.deleted ? { properties: { messageExpiryInterval: this.settings.tombstoneDays * 86_400 } } : {};
    return new Promise((resolve) =>
      connection.publish(row.topic, payload, { qos: 1, retain: true, ...expiry }, (err) => {
        if (!err) {
          this.ledger.published(row);
          this.counts[row.deleted ? 'tombstonesPublished' : 'published']++;
          this.lastError = null;
          resolve('sent');
          return;
        }
        if (!isConnectionClosed(err)) {
          const text = `the MQTT broker refused the fleet reference ${row.topic} (${err.message}): its ACL must let this device write under its own id, sync.deviceId "${this.settings.deviceId}"`;
          if (text !== this.lastError) this.log.warn(text);
          this.lastError = text;
        }
        resolve('stop');
      }),
    );
  }

  private tombstone(row: PublishRow): string {
    return encodeDeleted(parseFleetTopic(row.topic)!, Date.now());
  }

  /** The message of a live row, with the vector of the model in force; null when it cannot be made yet. */
  private async shared(row: PublishRow): Promise<string | null> {
    const reference = this.store.get(row.referenceId);
    if (!reference) {
      // Removed since the last comparison: the next one makes it a tombstone.
      this.scheduleReconcile();
      return null;
    }
    const model = this.models.active;
    let address = parseFleetTopic(row.topic)!;
    if (address.modelKey !== model.key) {
      // Never acknowledged (a live row is pending only until its first PUBACK) and the model
      // changed since: publish it under the key whose vector it will carry.
      address = { ...address, modelKey: model.key };
      row.topic = fleetTopic(address);
      this.ledger.moveTopic(row.referenceId, row.topic);
    }
    const vector = this.store.loadVectors(model.key, model.bundle.manifest.output.dimension, [row.referenceId]).data;
    // Not embedded for this model yet (added while another one was in force): the re-embedding after the swap brings it.
    if (vector.length === 0) return null;
    const image = reference.thumbnail && (await thumbnail(reference.thumbnail, { longestSide: thumbnailSide(model) }).catch(() => null));
    const { source, origin, createdAt, confidence, label, decision, labeledBy } = reference;
    const provenance = { source: source as 'human' | 'auto', origin, createdAt, confidence, modelKey: reference.modelKey, decision, labeledBy };
    const message: SharedReference = { ...address, label, provenance, vector, image };
    return encodeShared(message);
  }

  // ---- importing ----

  private readonly receive = (topic: string, payload: Buffer): void => {
    const address = parseFleetTopic(topic);
    if (!address) return this.refuse('bad_topic', topic, 'not linewatch/<site>/fleet/<model>/<device>/ref/<id>');
    // Its own references, back from the broker.
    if (address.device === this.settings.deviceId) return;
    if (!this.sites.has(address.site)) return this.refuse('untrusted_site', topic, `site ${address.site} is not in sync.trustedSites`);
    if (payload.length > this.settings.maxMessageBytes) return this.refuse('too_large', topic, `${payload.length} bytes, over sync.maxMessageBytes`);
    const message = decodeFleetMessage(address, payload);
    if ('refused' in message) return this.refuse(message.refused, topic, message.detail);
    if (this.queuedBytes + payload.length > maxQueuedBytes) {
      this.overflowed = true;
      return this.refuse('busy', topic, `${this.queue.length} fleet messages (${this.queuedBytes} bytes) already wait to be imported`);
    }
    this.queue.push({ message, bytes: payload.length });
    this.queuedBytes += payload.length;
    void this.importQueued();
  };

  /** One message at a time, in arrival order, so a tombstone never overtakes the reference it deletes. */
  private async importQueued(): Promise<void> {
    if (this.importing) return;
    this.importing = true;
    try {
      for (let next = this.queue.shift(); next; next = this.queue.shift()) {
        this.queuedBytes -= next.bytes;
        const { message } = next;
        try {
          if (message.kind === 'deleted') this.applyDeletion(message);
          else await this.applyReference(message, next.bytes);
        } catch (err) {
          this.log.error('importing a fleet reference failed', { id: fleetId(message.device, message.localId), error: errorText(err) });
        }
      }
      if (this.overflowed && this.session) {
        // Refused as busy: subscribing again makes the broker send its retained messages again.
        this.overflowed = false;
        this.attach(this.session);
      }
    } finally {
      this.importing = false;
    }
  }

  private applyDeletion(message: Extract<FleetMessage, { kind: 'deleted' }>): void {
    const id = fleetId(message.device, message.localId);
    const known = this.ledger.imported(id);
    if (known?.deleted) {
      this.counts.duplicates++;
      return;
    }
    const referenceId = known?.referenceId ?? null;
    this.db.transaction(() => {
      if (referenceId !== null) this.store.remove(referenceId);
      this.ledger.recordDeletion({ fleetId: id, site: message.site, device: message.device });
    })();
    if (referenceId !== null) {
      this.models.active.index.remove(referenceId);
      this.peers = this.ledger.peerReferences();
    }
    this.counts.deletionsApplied++;
  }

  private async applyReference(message: Extract<FleetMessage, { kind: 'live' }>, bytes: number): Promise<void> {
    const id = fleetId(message.device, message.localId);
    const topic = fleetTopic(message);
    if (this.ledger.imported(id)) {
      this.counts.duplicates++;
      return;
    }
    if (this.peers >= this.settings.maxPeerReferences) return this.refuse('cap', topic, `${this.peers} peer references, sync.maxPeerReferences`);
    const full = message.provenance.source === 'auto' && this.automaticCapReached(message.label);
    if (full) return this.refuse('cap', topic, full);
    const model = this.models.active;
    let image: Buffer | null = null;
    if (message.image) {
      try {
        // Decoded and made again: a peer's bytes never reach the store unchecked (a later model re-embeds them).
        image = await thumbnail(message.image, { longestSide: thumbnailSide(model) });
      } catch (err) {
        return this.refuse('bad_image', topic, errorText(err));
      }
    }
    let vector = message.vector;
    if (message.modelKey === model.key) {
      const problem = vectorProblem(vector, model.bundle.manifest.output.dimension);
      if (problem) return this.refuse('bad_vector', topic, problem);
    } else if (image) {
      vector = await embedItem(model, image);
    } else {
      return this.refuse('unknown_model', topic, `its vector is for ${message.modelKey}, this device runs ${model.key}, and it has no image to re-embed`);
    }
    if (this.models.active !== model) {
      // The model changed while this one was embedded: do it again with the new one.
      this.queue.unshift({ message, bytes });
      this.queuedBytes += bytes;
      return;
    }
    const referenceId = this.db.transaction(() => {
      const { provenance } = message;
      // A person labeled it unless its device admitted it; a version 1 message does not say who.
      const labeledBy = provenance.source === 'human' ? (provenance.labeledBy ?? 'unknown') : null;
      const added = this.store.add(
        { label: message.label, source: 'peer', origin: `peer:${id}`, confidence: provenance.confidence, thumbnail: image, createdAt: provenance.createdAt, device: message.device, decision: provenance.decision, labeledBy },
        model.key,
        vector,
      );
      this.ledger.recordImport({ fleetId: id, site: message.site, device: message.device, referenceId: added, modelKey: message.modelKey, provenance: message.provenance });
      return added;
    })();
    model.index.add(referenceId, vector);
    this.peers++;
    this.counts.imported++;
    this.lastImportAt = Date.now();
  }

  /**
   * Why a peer's automatic reference of `label` would take this device past learning's caps, or
   * null: peers' automatic references per label stay within learning.perLabelTotal, and all
   * automatic ones, its own and peers', within learning.maxAutoShare of the label's references.
   */
  private automaticCapReached(label: string): string | null {
    const { perLabelTotal, maxAutoShare } = this.settings.automatic;
    const fromPeers = this.store.countWhere({ label, source: 'peer', automatic: true });
    if (fromPeers >= perLabelTotal) return `${fromPeers} automatic peer references of "${label}", learning.perLabelTotal`;
    const automatic = this.store.countWhere({ label, automatic: true });
    const all = this.store.countWhere({ label });
    if ((automatic + 1) / (all + 1) > maxAutoShare) return `${automatic} of the ${all} references of "${label}" are automatic, learning.maxAutoShare`;
    return null;
  }

  private refuse(reason: Refusal, topic: string, detail: string): void {
    this.refused[reason] = (this.refused[reason] ?? 0) + 1;
    const now = Date.now();
    if (now - this.refusalsLoggedAt < refusalLogIntervalMs) {
      this.refusalsUnlogged++;
      return;
    }
    this.log.warn('fleet reference refused', { reason, topic, detail, refusedSinceLastLog: this.refusalsUnlogged });
    this.refusalsLoggedAt = now;
    this.refusalsUnlogged = 0;
  }
}

/** Why a received vector cannot stand beside this model's (wrong size, not finite, not L2-normalised), or null. */
function vectorProblem(vector: Float32Array, dimension: number): string | null {
  if (vector.length !== dimension) return `${vector.length} values, the model makes ${dimension}`;
  let norm = 0;
  for (const v of vector) norm += v * v;
  if (!Number.isFinite(norm)) return 'a value is not a finite number';
  if (Math.abs(Math.sqrt(norm) - 1) > 1e-3) return `its length is ${Math.sqrt(norm).toFixed(4)}, not 1 (vectors are L2-normalised)`;
  return null;
}
