import { EventEmitter } from 'node:events';
import { connect, type IClientOptions, type IClientPublishOptions, type IConnackPacket, type IDisconnectPacket, type IPublishPacket, type MqttClient, ReasonCodes } from 'mqtt';
import { createLogger, errorText, readRegularFileSync, redactUrl, UserError, type Logger } from '../common/index.js';

export interface SessionOptions {
  /** `mqtt://host:1883` or `mqtts://host:8883` (also ws/wss). */
  url: string;
  /** Stable, so the broker keeps this device's session. */
  clientId: string;
  username?: string;
  password?: string;
  keepaliveSeconds?: number;
  /** PEM files for TLS (mqtts/wss): the broker's CA, and this device's certificate and key. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Reconnect backoff: first delay, doubled after every failed attempt up to the max (each ±25% jitter). */
  reconnectMinMs?: number;
  /** Longest wait while the broker cannot be reached: how soon events flow after it is back. */
  reconnectMaxMs?: number;
  /** Longest wait after the broker answered but refused or soon dropped us (credentials, ACL, a clientId clash). */
  refusedReconnectMaxMs?: number;
  connectTimeoutMs?: number;
  /** How long the broker keeps this client's session after it disconnects. */
  sessionExpirySeconds?: number;
  logger?: Logger;
}

export const sessionDefaults = {
  keepaliveSeconds: 30,
  reconnectMinMs: 1_000,
  // A refused TCP connect costs a down broker next to nothing, so keep probing: attempts at most
  // 3.75 s apart (3 s + jitter) put the first publish within 5 s of the broker's return.
  reconnectMaxMs: 3_000,
  // A broker that answers and refuses is not helped by haste; two devices sharing a clientId
  // would throw each other off every few seconds. Also how long a connection must hold to
  // reset the backoff.
  refusedReconnectMaxMs: 30_000,
  connectTimeoutMs: 10_000,
  sessionExpirySeconds: 3_600,
} as const;

/** A message the session publishes on its own: a will, a birth, a goodbye. */
export interface SessionMessage {
  topic: string;
  payload: string | Buffer;
  qos: 0 | 1;
  retain: boolean;
}

/** One network connection. Consumers keep per-connection state keyed on it (what was sent on it). */
export interface Connection {
  readonly id: number;
  /** The broker's Receive Maximum: QoS 1 messages it takes unacknowledged. */
  readonly receiveMaximum: number;
  /** Publishes on this connection; the callback gets the PUBACK (QoS 1) or the error. */
  publish(topic: string, payload: string | Buffer, options: IClientPublishOptions, done?: (err?: Error) => void): void;
}

export interface SessionStatus {
  connected: boolean;
  /** Broker URL without any password. */
  url: string;
  /** Why the session is not connected right now (or the last refusal); null once all is well. */
  lastError: string | null;
  /** Connection attempts after the first one. */
  reconnects: number;
  /** While waiting to reconnect: the wait chosen (backoff), in ms; null while connected or connecting. */
  reconnectDelayMs: number | null;
  connectedAt: string | null;
}

/** Handles a message on a subscribed topic. */
export type MessageHandler = (topic: string, payload: Buffer, packet: IPublishPacket) => void;

/** Runs on every new connection, after subscriptions are renewed and before consumers hear of it. */
export type Birth = (connection: Connection) => Promise<void>;

interface Link {
  client: MqttClient;
  connection: Connection;
  ready: boolean;
  connectedAt: number | null;
  /** The broker refused the connection, or closed it (a DISCONNECT, or soon after it was made): it is there, haste does not help. */
  refused: boolean;
}

const unreachableCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT']);
const droppedCodes = new Set(['ECONNRESET', 'EPIPE']);
const credentialReasons = new Set([4, 134, 140]);
const authorizationReasons = new Set([5, 135, 138]);

/**
 * The one MQTT v5 connection of a device: connect with backoff and jitter, TLS, the will,
 * subscriptions renewed on every connect, births before anyone publishes, goodbyes on a clean
 * stop. mqtt.js keeps unacknowledged messages in memory only, so every connection gets a fresh
 * client (reconnectPeriod 0, our own backoff); what must survive a restart lives in the outbox,
 * whose drain starts again from its head on every connection.
 */
export class MqttSession {
  private readonly safeUrl: string;
  private readonly clientOptions: IClientOptions;
  private readonly settings: typeof sessionDefaults;
  private readonly log: Logger;
  private readonly changes = new EventEmitter();
  private readonly subscriptions = new Map<string, Set<MessageHandler>>();
  private readonly births: Birth[] = [];
  private readonly goodbyes: (() => SessionMessage)[] = [];
  private readonly readyListeners = new Set<(connection: Connection) => void>();
  private link: Link | null = null;
  private started = false;
  private stopping = false;
  private stopped: Promise<void> | null = null;
  private failures = 0;
  /** Connections in a row that the broker dropped soon after they were made (see onClose). */
  private quickDrops = 0;
  private connections = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private lastError: string | null = null;
  private reconnects = 0;
  private reconnectDelayMs: number | null = null;

  constructor(
    private readonly options: SessionOptions,
    /** Registered with the broker at every connect; may change between connects (Sparkplug's bdSeq). */
    private readonly will?: () => SessionMessage,
  ) {
    this.settings = { ...sessionDefaults, ...definedOnly(options) } as typeof sessionDefaults;
    this.log = options.logger ?? createLogger('mqtt');
    this.safeUrl = redactUrl(options.url);
    try {
      const protocol = new URL(options.url).protocol;
      if (!['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'].includes(protocol)) throw new Error(protocol);
    } catch {
      throw new UserError(`"${this.safeUrl}" is not an MQTT broker URL`, 'use mqtt://host:1883 or mqtts://host:8883');
    }
    this.clientOptions = {
      protocolVersion: 5,
      clientId: options.clientId,
      clean: false,
      properties: { sessionExpiryInterval: this.settings.sessionExpirySeconds },
      keepalive: this.settings.keepaliveSeconds,
      connectTimeout: this.settings.connectTimeoutMs,
      reconnectPeriod: 0,
      queueQoSZero: false,
      resubscribe: false,
      ...(options.username !== undefined && { username: options.username }),
      ...(options.password !== undefined && { password: options.password }),
      ...(options.caFile !== undefined && { ca: readPem(options.caFile, 'caFile') }),
      ...(options.certFile !== undefined && { cert: readPem(options.certFile, 'certFile') }),
      ...(options.keyFile !== undefined && { key: readPem(options.keyFile, 'keyFile') }),
    };
  }

  get url(): string {
    return this.safeUrl;
  }

  /** Adds a message published on every connect before the session is ready (availability, NBIRTH). */
  addBirth(birth: Birth): void {
    this.births.push(birth);
  }

  /** Adds a message published on a clean stop, before the DISCONNECT (so the will is not sent). */
  addGoodbye(message: () => SessionMessage): void {
    this.goodbyes.push(message);
  }

  /** Calls `listener` on every connection once it is ready (subscribed, births sent). Returns an unsubscribe. */
  onReady(listener: (connection: Connection) => void): () => void {
    this.readyListeners.add(listener);
    if (this.link?.ready) listener(this.link.connection);
    return () => this.readyListeners.delete(listener);
  }

  /** Subscribes (QoS 1) now and on every later connection. Returns an unsubscribe. */
  subscribe(filter: string, handler: MessageHandler): () => void {
    let handlers = this.subscriptions.get(filter);
    if (!handlers) {
      handlers = new Set();
      this.subscriptions.set(filter, handlers);
      if (this.link?.connectedAt != null) this.link.client.subscribe(filter, { qos: 1 });
    }
    handlers.add(handler);
    return () => {
      handlers.delete(handler);
      if (handlers.size === 0) {
        this.subscriptions.delete(filter);
        if (this.link?.connectedAt != null) this.link.client.unsubscribe(filter);
      }
    };
  }

  /** The current connection once it is ready, else null. */
  get connection(): Connection | null {
    return this.link?.ready ? this.link.connection : null;
  }

  /** Publishes on the current connection; rejects when there is none (callers that must not lose a message use the outbox). */
  publish(topic: string, payload: string | Buffer, options: IClientPublishOptions = { qos: 0 }): Promise<void> {
    const connection = this.connection;
    if (!connection) return Promise.reject(new Error(`not connected to the MQTT broker at ${this.safeUrl}`));
    return new Promise((resolve, reject) => connection.publish(topic, payload, options, (err) => (err ? reject(err) : resolve())));
  }

  start(): void {
    if (this.started) throw new Error('MQTT session already started');
    this.started = true;
    this.connect();
  }

  /**
   * Waits until a connection is ready or the deadline passes. While waiting in the backoff it
   * tries at once: the broker may have come back (used by a flush on stop).
   */
  async whenReady(deadline: number): Promise<Connection | null> {
    if (this.connection) return this.connection;
    if (!this.started || this.stopping) return null;
    if (!this.link) {
      if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
      this.connect();
    }
    const attempt = this.link!;
    await this.waitFor(() => this.link !== attempt || attempt.ready, deadline);
    return this.connection;
  }

  /** Resolves when `done()` holds or the deadline passes, re-checking whenever the session or a consumer reports a change. */
  waitFor(done: () => boolean, deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!done() && Date.now() < deadline) return;
        clearTimeout(timer);
        this.changes.off('change', check);
        resolve();
      };
      const timer = setTimeout(check, Math.max(0, deadline - Date.now()));
      this.changes.on('change', check);
      check();
    });
  }

  /** Consumers call this when something a waitFor() may test has changed (a PUBACK, say). */
  changed(): void {
    this.changes.emit('change');
  }

  status(): SessionStatus {
    const connectedAt = this.link?.connectedAt ?? null;
    return {
      connected: connectedAt != null,
      url: this.safeUrl,
      lastError: this.lastError,
      reconnects: this.reconnects,
      reconnectDelayMs: this.reconnectDelayMs,
      connectedAt: connectedAt === null ? null : new Date(connectedAt).toISOString(),
    };
  }

  /** Sends the goodbyes (at least a second for them), then disconnects cleanly. */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  /** Reports a problem in status and the log (once per distinct text). */
  setError(text: string): void {
    if (text !== this.lastError) this.log.warn(text);
    this.lastError = text;
  }

  private async shutdown(): Promise<void> {
    if (!this.started) return;
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const link = this.link;
    if (!link) return;
    if (link.connectedAt != null) {
      await Promise.all(
        this.goodbyes.map(
          (goodbye) =>
            new Promise<void>((resolve) => {
              const { topic, payload, qos, retain } = goodbye();
              const timer = setTimeout(resolve, 1_000);
              link.client.publish(topic, payload, { qos, retain }, () => {
                clearTimeout(timer);
                resolve();
              });
            }),
        ),
      );
    }
    this.link = null;
    this.changed();
    await endClient(link.client);
  }

  private connect(): void {
    this.reconnectTimer = null;
    this.reconnectDelayMs = null;
    const will = this.will?.();
    const client = connect(this.options.url, {
      ...this.clientOptions,
      ...(will && { will: { topic: will.topic, payload: Buffer.from(will.payload), qos: will.qos, retain: will.retain } }),
    });
    const id = ++this.connections;
    const link: Link = {
      client,
      ready: false,
      connectedAt: null,
      refused: false,
      connection: {
        id,
        receiveMaximum: 65_535,
        publish: (topic, payload, options, done) => client.publish(topic, payload, options, done),
      },
    };
    this.link = link;
    client.on('connect', (connack) => void this.onConnect(link, connack));
    client.on('message', (topic, payload, packet) => this.dispatch(topic, payload, packet));
    client.on('error', (err) => {
      // A number is a CONNACK reason code: the broker answered and said no.
      if (typeof (err as { code?: unknown }).code === 'number') link.refused = true;
      this.setError(this.describe(err));
    });
    client.on('disconnect', (packet) => {
      link.refused = true;
      this.onDisconnectPacket(packet);
    });
    client.on('close', () => this.onClose(link));
  }

  private async onConnect(link: Link, connack: IConnackPacket): Promise<void> {
    if (this.link !== link) return;
    link.connectedAt = Date.now();
    (link.connection as { receiveMaximum: number }).receiveMaximum = connack.properties?.receiveMaximum ?? 65_535;
    this.lastError = null;
    this.log.info('connected to the MQTT broker', { url: this.safeUrl, sessionPresent: connack.sessionPresent });
    try {
      // Subscriptions first: a command sent in answer to our birth must find us listening.
      const filters = [...this.subscriptions.keys()];
      if (filters.length > 0) {
        const granted = await link.client.subscribeAsync(Object.fromEntries(filters.map((topic) => [topic, { qos: 1 as const }])));
        const refused = granted.filter((g) => g.qos >= 128).map((g) => g.topic);
        if (refused.length > 0) this.setError(`the MQTT broker at ${this.safeUrl} refused the subscription to ${refused.join(', ')}: check the broker's ACL`);
      }
      for (const birth of this.births) await birth(link.connection);
    } catch (err) {
      if (this.link !== link) return;
      if (!isConnectionClosed(err as Error)) this.setError(`the MQTT broker at ${this.safeUrl} refused a subscription or birth message: ${errorText(err)}`);
    }
    if (this.link !== link || link.client.disconnected) return;
    link.ready = true;
    this.changed();
    for (const listener of this.readyListeners) listener(link.connection);
  }

  private dispatch(topic: string, payload: Buffer, packet: IPublishPacket): void {
    for (const [filter, handlers] of this.subscriptions) {
      if (!matches(filter, topic)) continue;
      for (const handler of handlers) {
        try {
          handler(topic, payload, packet);
        } catch (err) {
          this.log.error('MQTT message handler failed', { topic, error: errorText(err) });
        }
      }
    }
  }

  private onDisconnectPacket(packet: IDisconnectPacket): void {
    const reason = packet.reasonCode ? ReasonCodes[packet.reasonCode as keyof typeof ReasonCodes] ?? `reason ${packet.reasonCode}` : 'normal';
    const hint = packet.reasonCode === 142 ? ': another client uses the same clientId' : '';
    this.setError(`the MQTT broker at ${this.safeUrl} closed the connection (${reason})${hint}`);
  }

  private onClose(link: Link): void {
    if (this.link !== link) return;
    this.link = null;
    link.client.end(true);
    this.changed();
    if (this.stopping) return;
    if (link.connectedAt != null) {
      this.log.warn('lost the connection to the MQTT broker', { url: this.safeUrl });
      if (!this.lastError) this.setError(`lost the connection to the MQTT broker at ${this.safeUrl}`);
      // Only a connection that held for a while resets the backoff. Connections dropped soon after
      // they were made, twice in a row, back off like a refusal: two devices sharing a clientId
      // (mosquitto closes the older one without a word) must not throw each other off every few
      // seconds. One such drop is a broker that went down: it is retried at the short pace.
      if (Date.now() - link.connectedAt >= this.settings.refusedReconnectMaxMs) {
        this.failures = 0;
        this.quickDrops = 0;
      } else if (++this.quickDrops >= 2) {
        link.refused = true;
      }
    }
    const maxMs = link.refused ? this.settings.refusedReconnectMaxMs : this.settings.reconnectMaxMs;
    const delay = reconnectDelay(this.failures++, this.settings.reconnectMinMs, maxMs, Math.random());
    this.reconnectDelayMs = delay;
    this.reconnectTimer = setTimeout(() => {
      this.reconnects++;
      this.connect();
    }, delay);
  }

  private describe(err: Error): string {
    const code = (err as { code?: unknown }).code;
    const where = `the MQTT broker at ${this.safeUrl}`;
    if (typeof code === 'string' && unreachableCodes.has(code)) return `cannot reach ${where} (${code})`;
    if (typeof code === 'string' && droppedCodes.has(code)) return `lost the connection to ${where} (${code})`;
    if (typeof code === 'number' && credentialReasons.has(code)) return `${where} rejected the username or password (${err.message}): check username/password`;
    if (typeof code === 'number' && authorizationReasons.has(code)) {
      return `${where} does not authorize this client (${err.message}): check the username, client certificate and the broker's ACL`;
    }
    if (typeof code === 'string' && (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT'))) {
      return `TLS with ${where} failed (${code}): check caFile, certFile and keyFile`;
    }
    if (err.message === 'connack timeout') return `${where} did not answer within ${this.settings.connectTimeoutMs} ms`;
    return `MQTT error with ${where}: ${err.message}`;
  }
}

/**
 * The wait before reconnecting after `failures` failed attempts in a row: `minMs` doubled per
 * failure up to `maxMs`, then ±25% by `random` (0..1), so a plant's devices do not reconnect in
 * lockstep after a broker restart.
 */
export function reconnectDelay(failures: number, minMs: number, maxMs: number, random: number): number {
  const base = Math.min(maxMs, minMs * 2 ** failures);
  return Math.round(base * (0.75 + random * 0.5));
}

/** MQTT topic filter matching (`+` one level, `#` the rest). */
export function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** mqtt.js fails in-flight callbacks without a code when the connection closes: normal, they are resent. */
export function isConnectionClosed(err: Error): boolean {
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
  // A PEM file of certificates is a few KB; 1 MiB leaves room for any CA bundle.
  return readRegularFileSync(path, { what: `MQTT ${option}`, maxBytes: 1024 * 1024, hint: `check mqtt.${option} in the config` });
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
