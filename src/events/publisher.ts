import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type IClientOptions, type IConnackPacket, type IDisconnectPacket, type MqttClient, ReasonCodes } from 'mqtt';
import { createLogger, errorText, UserError, type Logger } from '../common/index.js';
import type { Outbox } from './outbox.js';

export interface PublisherOptions {
  /** `mqtt://host:1883` or `mqtts://host:8883` (also ws/wss). */
  url: string;
  /** Name the device; they make the default topic root and client id. */
  site: string;
  line: string;
  camera: string;
  /** Default `linewatch/<site>/<line>/<camera>/`; a missing trailing `/` is added. */
  topicRoot?: string;
  /** Default `linewatch-<site>-<line>-<camera>`: stable, so the broker keeps this device's session. */
  clientId?: string;
  username?: string;
  password?: string;
  keepaliveSeconds?: number;
  /** PEM files for TLS (mqtts/wss): the broker's CA, and this device's certificate and key. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** How often `<topicRoot>stats` is published; 0 turns stats off. */
  statsIntervalMs?: number;
  /** Content of the stats message (decision counts...), supplied by the daemon. */
  stats?: () => Record<string, unknown>;
  /** Events published but not yet acknowledged, at most (also capped by the broker's Receive Maximum). */
  inflight?: number;
  /** Reconnect backoff: first delay, doubled after every failed attempt up to the max. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  connectTimeoutMs?: number;
  /** How long the broker keeps this client's session after it disconnects. */
  sessionExpirySeconds?: number;
  logger?: Logger;
}

export const publisherDefaults = {
  keepaliveSeconds: 30,
  statsIntervalMs: 60_000,
  inflight: 16,
  reconnectMinMs: 1_000,
  reconnectMaxMs: 30_000,
  connectTimeoutMs: 10_000,
  sessionExpirySeconds: 3_600,
} as const;

export interface PublisherStatus {
  connected: boolean;
  /** Broker URL without any password. */
  url: string;
  /** Events in the outbox, not yet acknowledged by the broker. */
  backlog: number;
  /** Events acknowledged (PUBACK) since this publisher started. */
  delivered: number;
  /** ISO time of the last PUBACK, or null. */
  lastPubackAt: string | null;
  /** Why the publisher is not delivering right now; null once a connection succeeds. */
  lastError: string | null;
  /** Connection attempts after the first one. */
  reconnects: number;
}

export interface StopOptions {
  /** How long to keep delivering the backlog while connected before giving up. */
  flushTimeoutMs?: number;
}

export function defaultTopicRoot(site: string, line: string, camera: string): string {
  return `linewatch/${site}/${line}/${camera}/`;
}

/** One network connection: what was sent on it, so a new connection starts from the outbox head. */
interface Link {
  client: MqttClient;
  /** Highest seq published on this link. */
  cursor: number;
  inflight: Set<number>;
  window: number;
  /** `online` has been acknowledged; events follow it. */
  ready: boolean;
  connectedAt: number | null;
}

const unreachableCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT']);
const droppedCodes = new Set(['ECONNRESET', 'EPIPE']);
const credentialReasons = new Set([4, 134, 140]);
const authorizationReasons = new Set([5, 135, 138]);

/**
 * Delivers the outbox to an MQTT v5 broker at QoS 1, in seq order, deleting a row only on its
 * PUBACK. mqtt.js keeps unacknowledged messages in memory only, so every connection gets a
 * fresh client (reconnectPeriod 0, our own backoff) and starts again from the first row still
 * in the outbox: at-least-once, never lost.
 */
export class Publisher {
  private readonly url: string;
  private readonly safeUrl: string;
  private readonly topicRoot: string;
  private readonly availabilityTopic: string;
  private readonly clientOptions: IClientOptions;
  private readonly settings: Required<Pick<PublisherOptions, keyof typeof publisherDefaults>>;
  private readonly log: Logger;
  private readonly progress = new EventEmitter();
  private link: Link | null = null;
  private started = false;
  private stopping = false;
  private stopped: Promise<void> | null = null;
  private failures = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private statsTimer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private delivered = 0;
  /** PUBACKed rows waiting to be deleted together at the end of this turn of the event loop. */
  private acked: number[] = [];
  private lastPubackAt: string | null = null;
  private lastError: string | null = null;
  private reconnects = 0;

  constructor(
    private readonly outbox: Outbox,
    private readonly options: PublisherOptions,
  ) {
    this.settings = { ...publisherDefaults, ...definedOnly(options) };
    this.log = options.logger ?? createLogger('events');
    this.url = options.url;
    this.safeUrl = redact(options.url);
    try {
      const protocol = new URL(options.url).protocol;
      if (!['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'].includes(protocol)) throw new Error(protocol);
    } catch {
      throw new UserError(`"${this.safeUrl}" is not an MQTT broker URL`, 'use mqtt://host:1883 or mqtts://host:8883');
    }
    for (const [name, value] of [['site', options.site], ['line', options.line], ['camera', options.camera]] as const) {
      if (!value || /[/+#]/.test(value)) {
        throw new UserError(`the ${name} name "${value}" cannot be part of an MQTT topic`, `use a ${name} name without "/", "+" or "#"`);
      }
    }
    const root = options.topicRoot ?? defaultTopicRoot(options.site, options.line, options.camera);
    if (/[+#]/.test(root)) throw new UserError(`the MQTT topic root "${root}" contains a wildcard`, 'remove "+" and "#" from topicRoot');
    this.topicRoot = root.endsWith('/') ? root : `${root}/`;
    this.availabilityTopic = `${this.topicRoot}available`;
    this.clientOptions = {
      protocolVersion: 5,
      clientId: options.clientId ?? `linewatch-${options.site}-${options.line}-${options.camera}`,
      clean: false,
      properties: { sessionExpiryInterval: this.settings.sessionExpirySeconds },
      keepalive: this.settings.keepaliveSeconds,
      connectTimeout: this.settings.connectTimeoutMs,
      reconnectPeriod: 0,
      queueQoSZero: false,
      will: { topic: this.availabilityTopic, payload: Buffer.from('offline'), qos: 1, retain: true },
      ...(options.username !== undefined && { username: options.username }),
      ...(options.password !== undefined && { password: options.password }),
      ...(options.caFile !== undefined && { ca: readPem(options.caFile, 'caFile') }),
      ...(options.certFile !== undefined && { cert: readPem(options.certFile, 'certFile') }),
      ...(options.keyFile !== undefined && { key: readPem(options.keyFile, 'keyFile') }),
    };
  }

  /** Starts connecting; events flow as soon as the broker answers. */
  start(): void {
    if (this.started) throw new Error('publisher already started');
    this.started = true;
    this.unsubscribe = this.outbox.onAppend(() => this.notify());
    if (this.settings.statsIntervalMs > 0) {
      this.statsTimer = setInterval(() => this.publishStats(), this.settings.statsIntervalMs);
      this.statsTimer.unref();
    }
    this.connect();
  }

  /** Wakes the drain loop (the outbox already does this after append). */
  notify(): void {
    if (this.link) this.pump(this.link);
  }

  status(): PublisherStatus {
    return {
      connected: this.link?.connectedAt != null,
      url: this.safeUrl,
      backlog: this.outbox.backlog(),
      delivered: this.delivered,
      lastPubackAt: this.lastPubackAt,
      lastError: this.lastError,
      reconnects: this.reconnects,
    };
  }

  /**
   * Delivers what it can within flushTimeoutMs (only while connected), publishes `offline`,
   * and disconnects. Unacknowledged events stay in the outbox for the next start.
   */
  stop(options: StopOptions = {}): Promise<void> {
    this.stopped ??= this.shutdown(options.flushTimeoutMs ?? 5_000);
    return this.stopped;
  }

  private async shutdown(flushTimeoutMs: number): Promise<void> {
    if (!this.started) return;
    const deadline = Date.now() + flushTimeoutMs;
    if (this.statsTimer) clearInterval(this.statsTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.stopping = true;
    if (this.outbox.backlog() > 0 && !this.link?.ready && flushTimeoutMs > 0) {
      // The broker may have come back while we sat in the backoff wait: one last attempt now,
      // so a stop still delivers what the broker will take.
      if (!this.link) this.connect();
      const attempt = this.link!;
      await this.waitFor(() => this.link !== attempt || attempt.ready, deadline);
    }
    const link = this.link;
    if (link?.ready) {
      this.pump(link);
      await this.waitFor(() => this.link !== link || (link.inflight.size === 0 && this.acked.length === 0 && this.outbox.backlog() === 0), deadline);
    }
    this.unsubscribe?.();
    if (!link) return;
    if (this.link === link && link.connectedAt != null) {
      await new Promise<void>((resolve) => {
        // `offline` gets at least a second even when the flush used up the timeout.
        const timer = setTimeout(resolve, Math.max(deadline - Date.now(), 1_000));
        link.client.publish(this.availabilityTopic, 'offline', { qos: 1, retain: true }, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.link = null;
    await endClient(link.client);
    this.deleteAcked();
    this.log.info('event publisher stopped', { backlog: this.outbox.backlog(), delivered: this.delivered });
  }

  private connect(): void {
    this.reconnectTimer = null;
    const client = connect(this.url, this.clientOptions);
    const link: Link = { client, cursor: 0, inflight: new Set(), window: this.settings.inflight, ready: false, connectedAt: null };
    this.link = link;
    client.on('connect', (connack) => this.onConnect(link, connack));
    client.on('error', (err) => this.setError(this.describe(err)));
    client.on('disconnect', (packet) => this.onDisconnectPacket(packet));
    client.on('close', () => this.onClose(link));
  }

  private onConnect(link: Link, connack: IConnackPacket): void {
    if (this.link !== link) return;
    link.connectedAt = Date.now();
    link.window = Math.max(1, Math.min(this.settings.inflight, connack.properties?.receiveMaximum ?? Infinity));
    this.lastError = null;
    this.log.info('connected to the MQTT broker', { url: this.safeUrl, backlog: this.outbox.backlog(), sessionPresent: connack.sessionPresent });
    // Events wait for `online` so a subscriber always sees the device come up before its events,
    // and `online` never pushes the window past the broker's Receive Maximum.
    link.client.publish(this.availabilityTopic, 'online', { qos: 1, retain: true }, (err) => {
      if (err && !isConnectionClosed(err)) this.setError(`the MQTT broker at ${this.safeUrl} refused the availability message: ${err.message}`);
      link.ready = true;
      this.progress.emit('change');
      this.pump(link);
    });
  }

  /** Fills the in-flight window from the outbox, in seq order. */
  private pump(link: Link): void {
    if (this.link !== link || !link.ready) return;
    while (link.inflight.size < link.window) {
      const rows = this.outbox.peek(link.window - link.inflight.size, link.cursor);
      if (rows.length === 0) return;
      for (const row of rows) {
        link.cursor = row.seq;
        link.inflight.add(row.seq);
        link.client.publish(
          this.topicRoot + row.topic,
          row.payload,
          { qos: 1, properties: { contentType: 'application/json', payloadFormatIndicator: true } },
          (err) => this.onPuback(link, row.seq, err),
        );
      }
    }
  }

  private onPuback(link: Link, seq: number, err: Error | undefined): void {
    link.inflight.delete(seq);
    if (err) {
      // A closed connection is normal (resent after reconnect); a refusal needs a person.
      if (!isConnectionClosed(err)) {
        this.setError(`the MQTT broker at ${this.safeUrl} refused event seq ${seq} (${err.message}): it stays in the outbox and is resent after the next reconnect`);
      }
    } else {
      if (this.acked.length === 0) setImmediate(() => this.deleteAcked());
      this.acked.push(seq);
      this.delivered++;
      this.lastPubackAt = new Date().toISOString();
    }
    this.pump(link);
    this.progress.emit('change');
  }

  /** One transaction for every PUBACK of this turn: a commit each would cap delivery at the disk's fsync rate. */
  private deleteAcked(): void {
    const seqs = this.acked;
    if (seqs.length === 0) return;
    this.acked = [];
    try {
      this.outbox.ack(seqs);
    } catch (err) {
      // The rows stay and are sent again after the next reconnect: a duplicate, never a loss.
      this.log.warn('could not delete delivered events from the outbox', { events: seqs.length, error: errorText(err) });
    }
    this.progress.emit('change');
  }

  private onDisconnectPacket(packet: IDisconnectPacket): void {
    const reason = packet.reasonCode ? ReasonCodes[packet.reasonCode as keyof typeof ReasonCodes] ?? `reason ${packet.reasonCode}` : 'normal';
    const hint = packet.reasonCode === 142 ? ': another client uses the same clientId' : '';
    this.setError(`the MQTT broker at ${this.safeUrl} closed the connection (${reason})${hint}: events wait in the outbox`);
  }

  private onClose(link: Link): void {
    if (this.link !== link) return;
    this.link = null;
    link.client.end(true);
    this.progress.emit('change');
    if (this.stopping) return;
    if (link.connectedAt != null) {
      this.log.warn('lost the connection to the MQTT broker', { url: this.safeUrl, backlog: this.outbox.backlog() });
      if (!this.lastError) this.setError(`lost the connection to the MQTT broker at ${this.safeUrl}: events wait in the outbox`);
      // Only a connection that held for a while resets the backoff, so a broker that accepts
      // and then drops us (e.g. a clientId clash) is not hammered every second.
      if (Date.now() - link.connectedAt >= this.settings.reconnectMaxMs) this.failures = 0;
    }
    const base = Math.min(this.settings.reconnectMaxMs, this.settings.reconnectMinMs * 2 ** this.failures);
    this.failures++;
    // Jitter keeps a plant's devices from reconnecting in lockstep after a broker restart.
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.reconnectTimer = setTimeout(() => {
      this.reconnects++;
      this.connect();
    }, delay);
  }

  private publishStats(): void {
    const link = this.link;
    if (!link?.ready) return;
    let supplied: Record<string, unknown> = {};
    try {
      supplied = this.options.stats?.() ?? {};
    } catch (err) {
      this.log.warn('stats callback failed', { error: errorText(err) });
    }
    const payload = { time: new Date().toISOString(), ...supplied, outbox: { backlog: this.outbox.backlog(), delivered: this.delivered } };
    link.client.publish(`${this.topicRoot}stats`, JSON.stringify(payload), { qos: 0, retain: false });
  }

  private setError(text: string): void {
    if (text !== this.lastError) this.log.warn(text);
    this.lastError = text;
  }

  private describe(err: Error): string {
    const code = (err as { code?: unknown }).code;
    const where = `the MQTT broker at ${this.safeUrl}`;
    if (typeof code === 'string' && unreachableCodes.has(code)) return `cannot reach ${where} (${code}): events wait in the outbox`;
    if (typeof code === 'string' && droppedCodes.has(code)) return `lost the connection to ${where} (${code}): events wait in the outbox`;
    if (typeof code === 'number' && credentialReasons.has(code)) {
      return `${where} rejected the username or password (${err.message}): check username/password; events wait in the outbox`;
    }
    if (typeof code === 'number' && authorizationReasons.has(code)) {
      return `${where} does not authorize this client (${err.message}): check the username, client certificate and the broker's ACL; events wait in the outbox`;
    }
    if (typeof code === 'string' && (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT'))) {
      return `TLS with ${where} failed (${code}): check caFile, certFile and keyFile; events wait in the outbox`;
    }
    if (err.message === 'connack timeout') {
      return `${where} did not answer within ${this.settings.connectTimeoutMs} ms: events wait in the outbox`;
    }
    return `MQTT error with ${where}: ${err.message}; events wait in the outbox`;
  }

  private waitFor(done: () => boolean, deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!done() && Date.now() < deadline) return;
        clearTimeout(timer);
        this.progress.off('change', check);
        resolve();
      };
      const timer = setTimeout(check, Math.max(0, deadline - Date.now()));
      this.progress.on('change', check);
      check();
    });
  }
}

function isConnectionClosed(err: Error): boolean {
  return (err as { code?: unknown }).code === undefined;
}

/** Disconnects cleanly (DISCONNECT, so no will) when nothing is pending, else drops the socket. */
function endClient(client: MqttClient): Promise<void> {
  const force = !client.connected || Object.keys(client.outgoing).length > 0;
  return new Promise((resolve) => {
    // A hung broker may never close its side: do not let stop() hang on it.
    const timer = setTimeout(() => {
      client.stream?.destroy();
      resolve();
    }, 2_000);
    client.end(force, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function readPem(path: string, option: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UserError(`cannot read the MQTT ${option} ${path}: ${errorText(err)}`, `check mqtt.${option} in the config`, { cause: err });
  }
}

function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.password) return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
