import type { Logger } from '../common/index.js';
import type { Config } from '../config/index.js';
import { ControlApi, MqttCommands } from '../control/index.js';
import { announceAvailability, availabilityWill, OutboxDrain, StatsReporter, type Outbox } from '../events/index.js';
import { defaultClientId, MqttSession, topicRoot } from '../mqtt/index.js';
import type { MqttStatus } from './status.js';

/**
 * The daemon's MQTT side: one session, and what rides on it: availability, the outbox drain,
 * the stats message and the command topics. A reload that changes the broker builds a new one;
 * the outbox keeps every event across the change.
 */
export class Messaging {
  private readonly session: MqttSession;
  private readonly drain: OutboxDrain;
  private readonly stats: StatsReporter;
  private readonly commands: MqttCommands | null;

  constructor(config: Config, outbox: Outbox, api: ControlApi, statsContent: () => Record<string, unknown>, log: Logger) {
    const m = config.mqtt;
    const optional = <T>(value: T | null) => value ?? undefined;
    const names = { site: config.site, line: config.line, camera: config.camera };
    const root = topicRoot(names, m.topicRoot);
    const mqttLog = log.child('mqtt');
    this.session = new MqttSession(
      {
        url: m.url,
        clientId: m.clientId ?? defaultClientId(names),
        username: optional(m.username),
        password: optional(m.password),
        keepaliveSeconds: m.keepaliveS,
        caFile: optional(m.caFile),
        certFile: optional(m.certFile),
        keyFile: optional(m.keyFile),
        logger: mqttLog,
      },
      availabilityWill(root),
    );
    announceAvailability(this.session, root);
    this.drain = new OutboxDrain(outbox, this.session, { topicRoot: root, logger: mqttLog });
    this.stats = new StatsReporter(this.session, { topic: `${root}stats`, intervalMs: m.statsIntervalS * 1000, content: statsContent, logger: mqttLog });
    this.commands = config.control.mqtt ? new MqttCommands(api, this.session, { topicRoot: root, maxPayloadBytes: config.control.maxPayloadBytes, log: log.child('control') }) : null;
  }

  start(): void {
    this.commands?.start();
    this.drain.start();
    this.stats.start();
    this.session.start();
  }

  status(): MqttStatus {
    const drain = this.drain.status();
    return { ...this.session.status(), backlog: drain.backlog, delivered: drain.delivered, lastPubackAt: drain.lastPubackAt, commands: this.commands?.status() ?? null };
  }

  /** Delivers the backlog until the deadline (while the broker answers), says offline, disconnects. */
  async stop(deadline: number): Promise<void> {
    this.stats.stop();
    this.commands?.stop();
    await this.drain.stop(deadline);
    await this.session.stop();
  }
}
