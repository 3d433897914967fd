import type { Logger } from '../common/index.js';
import type { Config } from '../config/index.js';
import { ControlApi, MqttCommands } from '../control/index.js';
import { announceAvailability, availabilityWill, OutboxDrain, StatsReporter, type AnomalyEvent, type Outbox, type OutboxRow } from '../events/index.js';
import { defaultClientId, MqttSession, topicRoot, type DeviceNames, type SessionOptions } from '../mqtt/index.js';
import type { DecisionConsumer } from '../pipeline/index.js';
import { EdgeNode, type EdgeNodeStatus, type LineState } from '../sparkplug/index.js';
import type { Db } from '../storage/index.js';
import type { MqttStatus } from './status.js';

/** What the Sparkplug edge node reads besides the outbox: the database (bdSeq), the line's state, the decisions. */
export interface SparkplugInputs {
  db: Db;
  line: () => LineState;
  onDecision: (consumer: DecisionConsumer) => () => void;
}

/** The device: its one camera, or with a `cameras` list, its line (each camera has topics of its own under it). */
export function deviceNames(config: Config): DeviceNames {
  return config.cameras === null ? { site: config.site, line: config.line, camera: config.camera } : { site: config.site, line: config.line };
}

/**
 * Where an event row is published: under its camera's levels with a `cameras` list
 * (`linewatch/<site>/<line>/<camera>/`, or below mqtt.topicRoot), read from the event itself so
 * an event stored before a reload keeps the camera that saw it; the device's root for one camera.
 */
function eventRoot(config: Config, root: string): ((row: OutboxRow) => string) | undefined {
  if (config.cameras === null) return undefined;
  return (row) => {
    const { site, line, camera } = JSON.parse(row.payload) as AnomalyEvent;
    return config.mqtt.topicRoot === null ? topicRoot({ site, line, camera }) : `${root}${site}/${line}/${camera}/`;
  };
}

/** The JSON profile: availability, the outbox drain and the stats message on one session. */
interface JsonSide {
  session: MqttSession;
  drain: OutboxDrain;
  stats: StatsReporter;
}

/**
 * The daemon's MQTT side, per `mqtt.profile`: the JSON session (availability, the outbox drain,
 * the stats message), the Sparkplug edge node (its own session), or both; the command topics ride
 * on the JSON session, or on the edge node's when it is alone. A reload that changes the broker
 * builds a new one; the outbox keeps every event across the change.
 */
export class Messaging {
  private readonly json: JsonSide | null;
  private readonly edgeNode: EdgeNode | null;
  private readonly commands: MqttCommands | null;
  private readonly onDecision: SparkplugInputs['onDecision'];
  private removeConsumer: (() => void) | null = null;

  constructor(config: Config, outbox: Outbox, api: ControlApi, statsContent: () => Record<string, unknown>, log: Logger, sparkplug: SparkplugInputs) {
    const m = config.mqtt;
    const optional = <T>(value: T | null) => value ?? undefined;
    const names = deviceNames(config);
    const root = topicRoot(names, m.topicRoot);
    const mqttLog = log.child('mqtt');
    const clientId = m.clientId ?? defaultClientId(names);
    const sessionOptions = (id: string, logger: Logger): SessionOptions => ({
      url: m.url,
      clientId: id,
      username: optional(m.username),
      password: optional(m.password),
      keepaliveSeconds: m.keepaliveS,
      caFile: optional(m.caFile),
      certFile: optional(m.certFile),
      keyFile: optional(m.keyFile),
      logger,
    });
    this.onDecision = sparkplug.onDecision;
    if (m.profile === 'sparkplug') {
      this.json = null;
    } else {
      const session = new MqttSession(sessionOptions(clientId, mqttLog), availabilityWill(root));
      announceAvailability(session, root);
      this.json = {
        session,
        drain: new OutboxDrain(outbox, session, { topicRoot: root, rootOf: eventRoot(config, root), logger: mqttLog }),
        stats: new StatsReporter(session, { topic: `${root}stats`, intervalMs: m.statsIntervalS * 1000, content: statsContent, logger: mqttLog }),
      };
    }
    if (m.profile === 'json') {
      this.edgeNode = null;
    } else {
      const s = config.sparkplug;
      const sparkplugLog = log.child('sparkplug');
      this.edgeNode = new EdgeNode({
        // Two sessions of one device need two client ids, or the broker drops one for the other.
        session: sessionOptions(m.profile === 'both' ? `${clientId}-spb` : clientId, sparkplugLog),
        groupId: s.groupId ?? config.site,
        edgeNodeId: s.edgeNodeId ?? config.line,
        primaryHostId: s.primaryHostId,
        reportIntervalMs: s.reportIntervalMs,
        db: sparkplug.db,
        outbox,
        api,
        line: sparkplug.line,
        logger: sparkplugLog,
      });
    }
    this.commands = config.control.mqtt ? new MqttCommands(api, this.session, { topicRoot: root, maxPayloadBytes: config.control.maxPayloadBytes, log: log.child('control') }) : null;
  }

  /** The session commands (and the fleet sync) ride on: the JSON one, or the edge node's when it is alone. */
  get session(): MqttSession {
    return this.json?.session ?? this.edgeNode!.session;
  }

  start(): void {
    this.commands?.start();
    if (this.json) {
      this.json.drain.start();
      this.json.stats.start();
      this.json.session.start();
    }
    if (this.edgeNode) {
      this.removeConsumer = this.onDecision(this.edgeNode.consume);
      this.edgeNode.start();
    }
  }

  /** The JSON session's status (null in profile sparkplug). */
  status(): MqttStatus | null {
    if (!this.json) return null;
    const drain = this.json.drain.status();
    return { ...this.json.session.status(), backlog: drain.backlog, delivered: drain.delivered, lastPubackAt: drain.lastPubackAt, commands: this.commands?.status() ?? null };
  }

  /** The edge node's status (null in profile json). */
  sparkplugStatus(): EdgeNodeStatus | null {
    return this.edgeNode?.status() ?? null;
  }

  /** Delivers the backlog until the deadline (while the broker answers), says offline (NDEATH), disconnects. */
  async stop(deadline: number): Promise<void> {
    this.json?.stats.stop();
    this.commands?.stop();
    this.removeConsumer?.();
    await Promise.all([
      this.json && this.json.drain.stop(deadline).then(() => this.json!.session.stop()),
      this.edgeNode?.stop(deadline),
    ]);
  }
}
