import type { IPublishPacket } from 'mqtt';
import { errorText, RequestError, type Logger } from '../common/index.js';
import type { MqttSession } from '../mqtt/index.js';
import { failure, type ControlApi, type Reply } from './api.js';

/**
 * The control API over MQTT 5 request/response: a request on `<topicRoot>cmd/<name>` with a
 * JSON payload, the reply on its Response Topic with its Correlation Data. The broker's ACL
 * decides who may publish there (deploy/mosquitto).
 */
export class MqttCommands {
  private unsubscribe: (() => void) | null = null;
  private dropped = 0;
  private answered = 0;

  constructor(
    private readonly api: ControlApi,
    private readonly session: MqttSession,
    private readonly options: { topicRoot: string; maxPayloadBytes: number; log: Logger },
  ) {}

  start(): void {
    const prefix = `${this.options.topicRoot}cmd/`;
    this.unsubscribe = this.session.subscribe(`${prefix}+`, (topic, payload, packet) => {
      void this.handle(topic.slice(prefix.length), payload, packet).catch((err) =>
        this.options.log.error('MQTT command not answered', { topic, error: errorText(err) }),
      );
    });
  }

  stop(): void {
    this.unsubscribe?.();
  }

  status(): { answered: number; dropped: number } {
    return { answered: this.answered, dropped: this.dropped };
  }

  private async handle(name: string, payload: Buffer, packet: IPublishPacket): Promise<void> {
    const responseTopic = packet.properties?.responseTopic;
    const correlationData = packet.properties?.correlationData;
    if (!responseTopic || /[+#]/.test(responseTopic)) {
      // Nowhere to answer: say so in the log (sometimes, a flood must not flood the journal too).
      if (this.dropped++ % 100 === 0) {
        this.options.log.warn('MQTT command without a response topic dropped', { command: name, dropped: this.dropped, fix: 'set the MQTT 5 Response Topic property on the request' });
      }
      return;
    }
    const reply = await this.reply(name, payload);
    this.answered++;
    await this.session
      .publish(responseTopic, JSON.stringify(reply), {
        qos: 1,
        properties: { contentType: 'application/json', payloadFormatIndicator: true, ...(correlationData ? { correlationData } : {}) },
      })
      .catch((err) => this.options.log.warn('MQTT command reply not sent', { command: name, error: errorText(err) }));
  }

  private async reply(name: string, payload: Buffer): Promise<Reply> {
    if (payload.length > this.options.maxPayloadBytes) {
      return failure(new RequestError('too_large', `the command is ${payload.length} bytes, more than control.maxPayloadBytes (${this.options.maxPayloadBytes})`, 'send a smaller payload, or raise control.maxPayloadBytes'));
    }
    let params: unknown = {};
    if (payload.length > 0) {
      try {
        params = JSON.parse(payload.toString('utf8'));
      } catch (err) {
        return failure(new RequestError('bad_json', `the command payload is not JSON: ${errorText(err)}`, 'send a JSON object, e.g. {"threshold": 0.6}'));
      }
    }
    return this.api.call(name, params, 'mqtt');
  }
}
