import { createLogger, errorText, type Logger } from '../common/index.js';
import type { MqttSession } from '../mqtt/index.js';

/** The `schema` field of the stats message; docs/schemas/stats.schema.json describes it. */
export const STATS_SCHEMA = 'linewatch/stats/1';

/**
 * Publishes `<topicRoot>stats` periodically (QoS 0, not retained): counts, not one message per
 * good frame. Skipped while the session is down; the next period says it all again.
 */
export class StatsReporter {
  private timer: NodeJS.Timeout | null = null;
  private readonly log: Logger;

  constructor(
    private readonly session: MqttSession,
    private readonly options: { topic: string; intervalMs: number; content: () => Record<string, unknown>; logger?: Logger },
  ) {
    this.log = options.logger ?? createLogger('events');
  }

  start(): void {
    if (this.options.intervalMs <= 0) return;
    this.timer = setInterval(() => this.publish(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private publish(): void {
    if (!this.session.connection) return;
    let content: Record<string, unknown>;
    try {
      content = this.options.content();
    } catch (err) {
      this.log.warn('stats could not be gathered', { error: errorText(err) });
      return;
    }
    const payload = { schema: STATS_SCHEMA, time: new Date().toISOString(), ...content };
    this.session.publish(this.options.topic, JSON.stringify(payload), { qos: 0, retain: false }).catch(() => undefined);
  }
}
