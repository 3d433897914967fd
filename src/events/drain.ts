import { createLogger, errorText, type Logger } from '../common/index.js';
import { isConnectionClosed, type Connection, type MqttSession } from '../mqtt/index.js';
import { EVENTS_TOPIC, type Outbox, type OutboxRow } from './outbox.js';

export interface DrainOptions {
  /** Prefix of every outbox row's topic, ending in `/`. */
  topicRoot: string;
  /** The prefix of one row, when rows go to different roots (one per camera); default topicRoot. */
  rootOf?: (row: OutboxRow) => string;
  /** The outbox stream drained (its rows' relative topic); default the JSON events. */
  topic?: string;
  /** Events published but not yet acknowledged, at most (also capped by the broker's Receive Maximum). */
  inflight?: number;
  logger?: Logger;
}

export interface DrainStatus {
  /** Events in the outbox, not yet acknowledged by the broker. */
  backlog: number;
  /** Events acknowledged (PUBACK) since this drain started. */
  delivered: number;
  /** ISO time of the last PUBACK, or null. */
  lastPubackAt: string | null;
  /** Why an event is stuck (the broker refused it), or null. */
  lastError: string | null;
}

/** What was sent on one connection, so a new connection starts again from the outbox head. */
interface Sending {
  connection: Connection;
  /** Highest seq published on this connection. */
  cursor: number;
  inflight: Set<number>;
  window: number;
}

/**
 * Delivers the outbox through the MQTT session at QoS 1, in seq order, deleting a row only on
 * its PUBACK. Every connection starts from the first row still stored: at-least-once, never lost.
 */
export class OutboxDrain {
  private readonly log: Logger;
  private readonly inflight: number;
  private readonly topic: string;
  private sending: Sending | null = null;
  private unsubscribe: (() => void)[] = [];
  private delivered = 0;
  /** PUBACKed rows waiting to be deleted together at the end of this turn of the event loop. */
  private acked: number[] = [];
  private lastPubackAt: string | null = null;
  private lastError: string | null = null;

  constructor(
    private readonly outbox: Outbox,
    private readonly session: MqttSession,
    private readonly options: DrainOptions,
  ) {
    this.inflight = options.inflight ?? 16;
    this.topic = options.topic ?? EVENTS_TOPIC;
    this.log = options.logger ?? createLogger('events');
  }

  start(): void {
    this.unsubscribe = [
      this.outbox.onAppend(() => this.pump()),
      this.session.onReady((connection) => {
        this.sending = { connection, cursor: 0, inflight: new Set(), window: Math.max(1, Math.min(this.inflight, connection.receiveMaximum)) };
        this.log.info('delivering the outbox', { backlog: this.outbox.backlog(this.topic) });
        this.pump();
      }),
    ];
  }

  status(): DrainStatus {
    return { backlog: this.outbox.backlog(this.topic), delivered: this.delivered, lastPubackAt: this.lastPubackAt, lastError: this.lastError };
  }

  /**
   * Delivers what it can before the deadline (trying the broker once more if it is away), then
   * stops sending. Unacknowledged events stay in the outbox for the next start.
   */
  async stop(deadline: number): Promise<void> {
    if (this.outbox.backlog(this.topic) > 0 && Date.now() < deadline) {
      await this.session.whenReady(deadline);
      this.pump();
      await this.session.waitFor(() => this.settled(), deadline);
    }
    for (const unsubscribe of this.unsubscribe) unsubscribe();
    this.deleteAcked();
  }

  private settled(): boolean {
    const sending = this.current();
    return !sending || (sending.inflight.size === 0 && this.acked.length === 0 && this.outbox.backlog(this.topic) === 0);
  }

  /** The sending state of the session's current connection; a closed one is forgotten. */
  private current(): Sending | null {
    const connection = this.session.connection;
    if (!connection || this.sending?.connection !== connection) return null;
    return this.sending;
  }

  /** Fills the in-flight window from the outbox, in seq order. */
  private pump(): void {
    const sending = this.current();
    if (!sending) return;
    while (sending.inflight.size < sending.window) {
      const rows = this.outbox.peek(sending.window - sending.inflight.size, sending.cursor, this.topic);
      if (rows.length === 0) return;
      for (const row of rows) {
        sending.cursor = row.seq;
        sending.inflight.add(row.seq);
        sending.connection.publish(
          (this.options.rootOf?.(row) ?? this.options.topicRoot) + row.topic,
          row.payload,
          { qos: 1, properties: { contentType: 'application/json', payloadFormatIndicator: true } },
          (err) => this.onPuback(sending, row.seq, err),
        );
      }
    }
  }

  private onPuback(sending: Sending, seq: number, err: Error | undefined): void {
    sending.inflight.delete(seq);
    if (err) {
      // A closed connection is normal (resent after reconnect); a refusal needs a person.
      if (!isConnectionClosed(err)) {
        this.lastError = `the MQTT broker at ${this.session.url} refused event seq ${seq} (${err.message}): it stays in the outbox and is resent after the next reconnect`;
        this.session.setError(this.lastError);
      }
    } else {
      if (this.acked.length === 0) setImmediate(() => this.deleteAcked());
      this.acked.push(seq);
      this.delivered++;
      this.lastPubackAt = new Date().toISOString();
    }
    this.pump();
    this.session.changed();
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
    this.session.changed();
  }
}
