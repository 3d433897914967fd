import { createLogger, errorText, type Logger } from '../common/index.js';
import type { ControlApi } from '../control/index.js';
import { SPARKPLUG_STREAM, type AnomalyEvent, type Outbox } from '../events/index.js';
import { MqttSession, type Connection, type SessionMessage, type SessionOptions, type SessionStatus } from '../mqtt/index.js';
import type { DecisionConsumer } from '../pipeline/index.js';
import type { Db } from '../storage/index.js';
import { BdSeqStore } from './bdseq.js';
import {
  BD_SEQ,
  changed,
  deviceSamples,
  EVENT_ID,
  EVENT_LABEL,
  EVENT_SCORE,
  eventBirthSamples,
  nodeSamples,
  type CameraState,
  REBIRTH,
  toMetric,
  WRITABLE,
  type LastDecision,
  type LineState,
  type MetricValue,
} from './metrics.js';
import { decodePayload, encodePayload, numberOf, type UMetric, type UPayload } from './payload.js';
import { deviceTopic, nodeTopic, stateTopic, type EdgeNodeIdentity } from './topics.js';

export interface EdgeNodeOptions extends EdgeNodeIdentity {
  /** The broker, TLS and credentials; the client id is the caller's (`<clientId>-spb` beside the JSON session). */
  session: SessionOptions;
  /** Host application whose STATE gates every birth and all data; null = none. */
  primaryHostId: string | null;
  /** How often metrics are compared with what was reported (DDATA/NDATA by exception). */
  reportIntervalMs: number;
  db: Db;
  outbox: Outbox;
  api: ControlApi;
  /** The line's state now (the daemon's status). */
  line: () => LineState;
  logger?: Logger;
}

export interface EdgeNodeStatus extends SessionStatus {
  groupId: string;
  edgeNodeId: string;
  /** Its devices: one per camera, named by the camera. */
  devices: string[];
  /** bdSeq of the current (or last) CONNECT: its NBIRTH and NDEATH carry it. */
  bdSeq: number | null;
  /** seq of the last message sent (NBIRTH is 0). */
  seq: number | null;
  /** Births sent and data flowing on this connection. */
  born: boolean;
  primaryHost: { id: string; online: boolean } | null;
  births: number;
  ddataSent: number;
  /** Events sent as DDATA, and those of them marked is_historical. */
  eventsSent: number;
  historicalSent: number;
  /** Events removed from the outbox (written on a connection that then stayed up for the grace period). */
  eventsDelivered: number;
  commands: { handled: number; refused: number };
  /** Events of the Sparkplug stream still in the outbox. */
  backlog: number;
}

/** One connection's Sparkplug session. */
interface Link {
  connection: Connection;
  /** Which CONNECT it is (the will function counts them), so a STATE is matched to its connection. */
  attempt: number;
  /** seq of the last message sent; the NBIRTH is 0. */
  seq: number;
  born: boolean;
  /** Events decided before this time go out as is_historical: they waited for the broker or the host. */
  liveSince: number;
  /** Highest outbox seq sent in this data session. */
  cursor: number;
  /** Events written to the socket, deleted once the connection outlived the grace period. */
  written: { seq: number; at: number }[];
  pumping: boolean;
}

/** Rows sent per turn of the event loop: a backlog after an outage does not stall frames. */
const BATCH = 200;
/** Refused commands and bad STATE messages are logged at most this often (a flood must not flood the journal). */
const REFUSAL_LOG_MS = 10_000;

/**
 * The Sparkplug B 3.0 edge node: the line is an edge node, its camera a device. It owns its MQTT
 * session (NDEATH as the will, bdSeq persisted), sends NBIRTH/DBIRTH and DATA by exception,
 * anomaly events from the outbox as DDATA (at least once; historical when they waited), obeys a
 * primary host's STATE, and takes Rebirth and classifier writes as commands.
 */
export class EdgeNode {
  readonly session: MqttSession;
  private readonly log: Logger;
  private readonly bdSeqs: BdSeqStore;
  private readonly graceMs: number;
  private bdSeq: number | null = null;
  private attempts = 0;
  private link: Link | null = null;
  /** The primary host's last valid STATE, and on which CONNECT it came. */
  private host: { online: boolean; attempt: number } | null = null;
  private lastOnlineTimestamp: number | null = null;
  private readonly reportedNode = new Map<string, MetricValue>();
  /** By device: what its DBIRTH and DDATA last reported. */
  private readonly reportedDevices = new Map<string, Map<string, MetricValue>>();
  private birthLabels = '';
  /** The devices of the last birth, where events go. */
  private birthDevices: string[] = [];
  /** The cameras as last seen: the devices status shows and DCMD may name. */
  private devices: string[] = [];
  /** By camera key: its last decision, and its frame rate over the last report interval. */
  private readonly last = new Map<string, LastDecision>();
  private readonly frames = new Map<string, { count: number; at: number; perSecond: number }>();
  private counters = { births: 0, ddataSent: 0, eventsSent: 0, historicalSent: 0, eventsDelivered: 0, handled: 0, refused: 0 };
  private refusalLog = { at: 0, since: 0 };
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void)[] = [];

  constructor(private readonly options: EdgeNodeOptions) {
    this.log = options.logger ?? createLogger('sparkplug');
    this.bdSeqs = new BdSeqStore(options.db);
    // Sparkplug 3.0 §5 "Edge Node Session Establishment": Clean Start and a Session Expiry Interval
    // of zero. MqttSession always asks to resume, but with expiry 0 the broker keeps nothing to resume.
    this.session = new MqttSession({ ...options.session, sessionExpirySeconds: 0 }, () => this.will());
    this.session.addBirth((connection) => this.connected(connection));
    // An intentional disconnect publishes the NDEATH first (§5 "Edge Node Session Termination").
    this.session.addGoodbye(() => this.death());
    // mqtt.js writes a QoS 0 message without any answer: only a connection that stays up for
    // longer than the keepalive's 1.5x (when a dead link is noticed) shows it reached the broker.
    this.graceMs = 1.5 * (options.session.keepaliveSeconds ?? 30) * 1000;
  }

  /** Every decision, for its camera's last label and score. */
  readonly consume: DecisionConsumer = ({ frame, decision }) => {
    if (frame.camera) this.last.set(frame.camera.key, { label: decision.label, score: decision.score });
  };

  start(): void {
    const o = this.options;
    // Subscriptions are renewed on every connect before the births run (§5: NCMD/DCMD before NBIRTH).
    this.unsubscribe = [
      this.session.subscribe(nodeTopic(o, 'NCMD'), (_topic, payload) => this.nodeCommand(payload)),
      // Every device id, so a command for a device that is not ours is counted, not silently lost.
      this.session.subscribe(deviceTopic(o, 'DCMD', '+'), (topic, payload) =>
        void this.deviceCommand(topic, payload).catch((err) => this.log.error('DCMD failed', { topic, error: errorText(err) })),
      ),
      ...(o.primaryHostId ? [this.session.subscribe(stateTopic(o.primaryHostId), (_topic, payload) => this.hostState(payload))] : []),
      this.session.onReady(() => this.pump()),
      o.outbox.onAppend(() => this.pump()),
    ];
    this.measure(o.line(), Date.now());
    this.timer = setInterval(() => this.tick(), o.reportIntervalMs);
    this.session.start();
  }

  /** Sends what the outbox holds while the deadline allows, then NDEATH and a clean disconnect. */
  async stop(deadline: number): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const unsubscribe of this.unsubscribe) unsubscribe();
    const link = this.sendable();
    // QoS 0 has no answer to wait for: rows written now stay stored and go again (historical) at the next start.
    while (link && Date.now() < deadline && this.sendBatch(link) === BATCH);
    await this.session.stop();
  }

  status(): EdgeNodeStatus {
    const o = this.options;
    const link = this.link;
    const c = this.counters;
    return {
      ...this.session.status(),
      groupId: o.groupId,
      edgeNodeId: o.edgeNodeId,
      devices: this.devices,
      bdSeq: this.bdSeq,
      seq: link?.born ? link.seq : null,
      born: this.sendable() !== null,
      primaryHost: o.primaryHostId ? { id: o.primaryHostId, online: this.hostOnline(link) } : null,
      births: c.births,
      ddataSent: c.ddataSent,
      eventsSent: c.eventsSent,
      historicalSent: c.historicalSent,
      eventsDelivered: c.eventsDelivered,
      commands: { handled: c.handled, refused: c.refused },
      backlog: o.outbox.backlog(SPARKPLUG_STREAM),
    };
  }

  /** The will of a new CONNECT: NDEATH with the next bdSeq, stored before it is used. */
  private will(): SessionMessage {
    this.attempts++;
    this.bdSeq = this.bdSeqs.next();
    return this.death();
  }

  /** NDEATH: bdSeq only, no seq (§6 "NDEATH"); QoS 1, not retained. */
  private death(): SessionMessage {
    const payload = encodePayload({ timestamp: Date.now(), metrics: [{ name: BD_SEQ, type: 'Int64', value: this.bdSeq ?? 0 }] });
    return { topic: nodeTopic(this.options, 'NDEATH'), payload, qos: 1, retain: false };
  }

  /** A birth of the session: a new Sparkplug session on this connection, born now unless a primary host must be seen online first. */
  private async connected(connection: Connection): Promise<void> {
    this.link = { connection, attempt: this.attempts, seq: 0, born: false, liveSince: 0, cursor: 0, written: [], pumping: false };
    if (this.hostOnline(this.link)) this.birth(this.link, true);
  }

  /** §5 "Edge Node Session Establishment": no primary host configured, or its STATE online on this connection. */
  private hostOnline(link: Link | null): boolean {
    if (!this.options.primaryHostId) return true;
    return !!link && !!this.host?.online && this.host.attempt === link.attempt;
  }

  /** The link data may go out on: born, host online, and the session's current connection. */
  private sendable(): Link | null {
    const link = this.link;
    if (!link?.born || !this.hostOnline(link)) return null;
    return this.session.connection === link.connection ? link : null;
  }

  /**
   * NBIRTH (seq 0) and DBIRTH with every metric. `fresh` starts a data session (a new connection,
   * the primary host back): the outbox is sent again from its head, and what was decided before
   * now goes out as historical. A Rebirth request keeps the data session going.
   */
  private birth(link: Link, fresh: boolean): void {
    const now = Date.now();
    const o = this.options;
    const line = o.line();
    const node = nodeSamples(line, o.outbox.backlog(SPARKPLUG_STREAM));
    this.reportedNode.clear();
    changed(node, this.reportedNode);
    this.reportedDevices.clear();
    this.birthLabels = labelsOf(line);
    this.birthDevices = line.cameras.map((c) => c.camera);
    link.seq = 0;
    const nbirth: UMetric[] = [
      // bdSeq of this connection's will, also after a Rebirth (§5 "Commands", rebirth-action-3).
      { name: BD_SEQ, type: 'Int64', value: this.bdSeq ?? 0, timestamp: now },
      // Always false in the NBIRTH (§5 "Commands", tck-id-operational-behavior-data-commands-rebirth-value).
      { name: REBIRTH, type: 'Boolean', value: false, timestamp: now },
      ...node.map((s) => toMetric(s, now)),
    ];
    link.connection.publish(nodeTopic(o, 'NBIRTH'), encodePayload({ timestamp: now, seq: 0, metrics: nbirth }), { qos: 0, retain: false });
    // A DBIRTH per camera, each with every metric of its device.
    for (const camera of line.cameras) {
      const reported = new Map<string, MetricValue>();
      this.reportedDevices.set(camera.camera, reported);
      const device = changed([...this.deviceSamples(camera, line), ...eventBirthSamples], reported);
      this.publish(link, deviceTopic(o, 'DBIRTH', camera.camera), device.map((s) => toMetric(s, now)), now);
    }
    link.born = true;
    this.counters.births++;
    if (fresh) {
      link.liveSince = now;
      link.cursor = 0;
      link.written = [];
    }
    this.log.info('Sparkplug births sent', { bdSeq: this.bdSeq, group: o.groupId, edgeNode: o.edgeNodeId, devices: this.birthDevices, fresh });
  }

  private deviceSamples(camera: CameraState, line: LineState) {
    return deviceSamples(camera, line.classifier, this.last.get(camera.key) ?? null, this.frames.get(camera.key)?.perSecond ?? 0);
  }

  /** Each camera's frames per second since the last call; the devices status shows. */
  private measure(line: LineState, now: number): void {
    this.devices = line.cameras.map((c) => c.camera);
    const keys = new Set(line.cameras.map((c) => c.key));
    for (const key of this.frames.keys()) {
      if (keys.has(key)) continue;
      this.frames.delete(key);
      this.last.delete(key);
    }
    for (const camera of line.cameras) {
      const count = camera.capture.framesReceived;
      const before = this.frames.get(camera.key);
      const perSecond = before && now > before.at ? Math.round(((count - before.count) * 10_000) / (now - before.at)) / 10 : (before?.perSecond ?? 0);
      this.frames.set(camera.key, { count, at: now, perSecond });
    }
  }

  /** One message after the NBIRTH: seq one more, 255 wrapping to 0 (§6 "Payload", sequence-num-incrementing). QoS 0, not retained. */
  private publish(link: Link, topic: string, metrics: UMetric[], timestamp: number, written?: () => void): void {
    link.seq = (link.seq + 1) % 256;
    link.connection.publish(topic, encodePayload({ timestamp, seq: link.seq, metrics }), { qos: 0, retain: false }, (err) => {
      if (!err) written?.();
    });
  }

  /** Every report interval: frames per second, NDATA/DDATA of what changed, and events past the grace period removed. */
  private tick(): void {
    try {
      const line = this.options.line();
      const now = Date.now();
      this.measure(line, now);
      const link = this.sendable();
      if (!link) return;
      // NBIRTH must name every metric of the session (§5 "Data Publish"): a label added or gone means a
      // rebirth. (A reload that changes the cameras builds a new edge node: NDEATH, then its births.)
      if (labelsOf(line) !== this.birthLabels) {
        this.birth(link, false);
      } else {
        this.report(link, line, now);
      }
      this.acknowledge(link, now);
      this.pump();
    } catch (err) {
      this.log.error('Sparkplug report failed', { error: errorText(err) });
    }
  }

  private report(link: Link, line: LineState, now: number): void {
    const node = changed(nodeSamples(line, this.options.outbox.backlog(SPARKPLUG_STREAM)), this.reportedNode);
    if (node.length > 0) this.publish(link, nodeTopic(this.options, 'NDATA'), node.map((s) => toMetric(s, now)), now);
    for (const camera of line.cameras) {
      const reported = this.reportedDevices.get(camera.camera);
      if (!reported) continue;
      const device = changed(this.deviceSamples(camera, line), reported);
      if (device.length === 0) continue;
      this.publish(link, deviceTopic(this.options, 'DDATA', camera.camera), device.map((s) => toMetric(s, now)), now);
      this.counters.ddataSent++;
    }
  }

  private acknowledge(link: Link, now: number): void {
    let n = 0;
    while (n < link.written.length && link.written[n]!.at <= now - this.graceMs) n++;
    if (n === 0) return;
    const seqs = link.written.splice(0, n).map((w) => w.seq);
    try {
      this.counters.eventsDelivered += this.options.outbox.ack(seqs);
    } catch (err) {
      // They stay and are sent again on the next connection: a duplicate, never a loss.
      this.log.warn('could not delete delivered events from the outbox', { events: seqs.length, error: errorText(err) });
    }
  }

  /** Sends the outbox's Sparkplug stream as DDATA, in order, a batch per turn of the event loop. */
  private pump(): void {
    const link = this.sendable();
    if (!link || link.pumping) return;
    if (this.sendBatch(link) < BATCH) return;
    link.pumping = true;
    setImmediate(() => {
      link.pumping = false;
      this.pump();
    });
  }

  private sendBatch(link: Link): number {
    const rows = this.options.outbox.peek(BATCH, link.cursor, SPARKPLUG_STREAM);
    for (const row of rows) {
      link.cursor = row.seq;
      let event: AnomalyEvent;
      try {
        event = JSON.parse(row.payload) as AnomalyEvent;
      } catch (err) {
        this.log.error('an outbox row is not an event; skipped', { seq: row.seq, error: errorText(err) });
        continue;
      }
      // Stamped with the frame's capture time, so a host stores it where it happened and matches the JSON event by id.
      const at = Date.parse(event.capturedAt);
      const historical = Date.parse(event.decidedAt) < link.liveSince;
      const metrics: UMetric[] = [
        { name: EVENT_ID, type: 'String', value: event.id, timestamp: at, isHistorical: historical },
        { name: EVENT_LABEL, type: 'String', value: event.label, timestamp: at, isHistorical: historical },
        { name: EVENT_SCORE, type: 'Double', value: event.score, timestamp: at, isHistorical: historical },
      ];
      // From the camera that saw it; an event stored under a camera no longer configured goes out from the first device.
      const device = this.birthDevices.includes(event.camera) ? event.camera : this.birthDevices[0]!;
      this.publish(link, deviceTopic(this.options, 'DDATA', device), metrics, Date.now(), () => link.written.push({ seq: row.seq, at: Date.now() }));
      this.counters.ddataSent++;
      this.counters.eventsSent++;
      if (historical) this.counters.historicalSent++;
    }
    return rows.length;
  }

  /**
   * The primary host's STATE (§5 "Edge Node Session Establishment" and "Termination"): online
   * (timestamp not older than the last one) allows the births; offline (not older than the last
   * online one) ends the session with an NDEATH and holds every event in the outbox.
   */
  private hostState(payload: Buffer): void {
    let state: { online: boolean; timestamp: number };
    try {
      const parsed = JSON.parse(payload.toString('utf8')) as { online?: unknown; timestamp?: unknown };
      if (typeof parsed.online !== 'boolean' || typeof parsed.timestamp !== 'number') throw new Error('needs {"online": boolean, "timestamp": number}');
      state = { online: parsed.online, timestamp: parsed.timestamp };
    } catch (err) {
      this.warn('a STATE message of the primary host is not Sparkplug 3.0 JSON; ignored', { error: errorText(err) });
      return;
    }
    if (state.online) {
      if (this.lastOnlineTimestamp !== null && state.timestamp < this.lastOnlineTimestamp) return;
      this.lastOnlineTimestamp = state.timestamp;
      this.host = { online: true, attempt: this.attempts };
      const link = this.link;
      if (link && link.attempt === this.attempts && !link.born) {
        this.log.info('primary host online', { host: this.options.primaryHostId });
        this.birth(link, true);
        this.pump();
      }
      return;
    }
    // An offline STATE older than the online one is a late death of a previous host session: ignored.
    if (this.lastOnlineTimestamp !== null && state.timestamp < this.lastOnlineTimestamp) return;
    this.host = { online: false, attempt: this.attempts };
    const link = this.link;
    if (link?.born) {
      // The spec then disconnects and connects again (to walk a list of servers); with one broker the
      // session stays, the NDEATH ends the Sparkplug session and the next NBIRTH keeps this CONNECT's bdSeq.
      link.connection.publish(nodeTopic(this.options, 'NDEATH'), this.death().payload, { qos: 1, retain: false });
      link.born = false;
      // Events written but not yet past the grace period may not have reached the host: they go again.
      link.written = [];
      this.log.warn('primary host offline: holding data until it is back', { host: this.options.primaryHostId });
    }
  }

  /** NCMD: `Node Control/Rebirth` = true republishes NBIRTH and DBIRTH (§5 "Commands"). */
  private nodeCommand(payload: Buffer): void {
    const metrics = this.decode(payload, 'NCMD');
    if (!metrics) return;
    for (const m of metrics) {
      if (m.name !== REBIRTH || m.value !== true) {
        this.refuse('NCMD refused: the only node command is "Node Control/Rebirth" = true (Boolean)', { metric: m.name ?? null, type: m.type ?? null });
        return;
      }
    }
    this.counters.handled++;
    const link = this.sendable();
    // Not born yet (waiting for the primary host): the births come anyway.
    if (link) this.birth(link, false);
  }

  /** DCMD to any camera: writes to the line's threshold, k and unknown distance, all or none, through the control API. */
  private async deviceCommand(topic: string, payload: Buffer): Promise<void> {
    const device = topic.slice(topic.lastIndexOf('/') + 1);
    if (!this.devices.includes(device)) {
      this.refuse(`DCMD refused: this edge node has no device "${device}"`, { devices: this.devices });
      return;
    }
    const metrics = this.decode(payload, 'DCMD');
    if (!metrics) return;
    const params: Record<string, number> = {};
    for (const m of metrics) {
      const target = m.name ? WRITABLE[m.name] : undefined;
      const value = numberOf(m.value);
      if (!target) {
        this.refuse(`DCMD refused: "${m.name ?? '(no name)'}" is not a writable metric`, { writable: Object.keys(WRITABLE) });
        return;
      }
      if (value === null || typeof m.value === 'boolean' || (target.integer && !Number.isInteger(value))) {
        this.refuse(`DCMD refused: "${m.name}" needs ${target.integer ? 'an integer' : 'a number'}`, { type: m.type ?? null });
        return;
      }
      params[target.param] = value;
    }
    if (Object.keys(params).length === 0) {
      this.refuse('DCMD refused: no metric to write', {});
      return;
    }
    const reply = await this.options.api.call('classifier.set', params, 'sparkplug');
    if (!reply.ok) {
      this.refuse(`DCMD refused: ${reply.error.message}`, { params });
      return;
    }
    this.counters.handled++;
    // The host sees its write take effect in the next DDATA, without waiting for the report interval.
    const link = this.sendable();
    if (link) this.report(link, this.options.line(), Date.now());
  }

  private decode(payload: Buffer, verb: string): UMetric[] | null {
    let decoded: UPayload;
    try {
      decoded = decodePayload(payload);
    } catch (err) {
      this.refuse(`${verb} refused: not a Sparkplug B payload`, { error: errorText(err) });
      return null;
    }
    const metrics = decoded.metrics ?? [];
    if (metrics.length === 0) {
      this.refuse(`${verb} refused: no metrics`, {});
      return null;
    }
    return metrics;
  }

  private refuse(message: string, fields: Record<string, unknown>): void {
    this.counters.refused++;
    this.warn(message, fields);
  }

  /** Logs the first bad message, then at most one line per interval with the count since. */
  private warn(message: string, fields: Record<string, unknown>): void {
    this.refusalLog.since++;
    const now = Date.now();
    if (now - this.refusalLog.at < REFUSAL_LOG_MS) return;
    this.log.warn(message, { ...fields, count: this.refusalLog.since });
    this.refusalLog = { at: now, since: 0 };
  }
}

function labelsOf(line: LineState): string {
  return Object.keys(line.references.byLabel).sort().join('\n');
}
