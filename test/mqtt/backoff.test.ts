import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MqttSession, reconnectDelay, sessionDefaults } from '../../dist/mqtt/index.js';
import { freePort, startMosquitto } from '../helpers/mosquitto.js';
import { until } from '../ops/helpers.js';

const { reconnectMinMs, reconnectMaxMs, refusedReconnectMaxMs } = sessionDefaults;
/** The waits before attempts 1..n, all with the same jitter draw. */
const schedule = (n: number, maxMs: number, random: number) => Array.from({ length: n }, (_, failures) => reconnectDelay(failures, reconnectMinMs, maxMs, random));

describe('MQTT reconnect backoff', () => {
  it('doubles from 1 s, then probes an unreachable broker every 3 s ±25%: never more than 3.75 s between attempts, however long the outage', () => {
    expect(schedule(5, reconnectMaxMs, 0.5)).toEqual([1000, 2000, 3000, 3000, 3000]);
    // The longest wait there can be, after any number of failures: the broker is back in use within 5 s of its return.
    expect(Math.max(...schedule(1000, reconnectMaxMs, 1))).toBe(3750);
    // And never faster than 2.25 s once backed off, however the jitter falls.
    expect(Math.min(...schedule(1000, reconnectMaxMs, 0).slice(2))).toBe(2250);
  });

  it('waits up to 30 s ±25% for a broker that answered and refused us', () => {
    expect(schedule(7, refusedReconnectMaxMs, 0.5)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(Math.max(...schedule(1000, refusedReconnectMaxMs, 1))).toBe(37500);
  });

  it('spreads the devices of a plant: the jitter draw moves a wait by up to a quarter either way', () => {
    expect([0, 0.25, 0.5, 0.75, 1].map((r) => reconnectDelay(3, reconnectMinMs, reconnectMaxMs, r))).toEqual([2250, 2625, 3000, 3375, 3750]);
  });
});

describe('MQTT reconnect backoff on a real session', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  const session = (url: string, clientId = `backoff-${randomUUID()}`) => {
    const created = new MqttSession({ url, clientId, reconnectMinMs: 10, reconnectMaxMs: 40, refusedReconnectMaxMs: 60_000 });
    cleanups.push(() => created.stop());
    created.start();
    return created;
  };

  /** Six failed attempts in a row, then the wait the session chose before the seventh. */
  async function waitAfterSixFailures(url: string, clientId?: string): Promise<number> {
    const failing = session(url, clientId);
    await until(() => failing.status().reconnects >= 6 && failing.status().reconnectDelayMs !== null, 'six reconnect attempts', 20_000);
    return failing.status().reconnectDelayMs!;
  }

  it('keeps to the short cap while nobody answers, and backs off to the long one when the broker answers "not authorized"', async () => {
    // 40 ms ±25% at most.
    expect(await waitAfterSixFailures(`mqtt://127.0.0.1:${await freePort()}`)).toBeLessThanOrEqual(50);
    const broker = await startMosquitto({ allowAnonymous: false });
    cleanups.push(() => broker.stop());
    // 10 ms doubled six times: 640 ms ±25%.
    expect(await waitAfterSixFailures(broker.url)).toBeGreaterThanOrEqual(480);
  });

  it('retries at the short pace when the broker goes down soon after the session connected (an outage, not a clash)', async () => {
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    await broker.stop();
    // An outage first, so the failure count is high when the session connects again (it is reset
    // only by a connection that holds): the drop that follows must not turn it into the long cap.
    const dropped = session(broker.url);
    await until(() => dropped.status().reconnects >= 8, 'eight attempts while the broker is down', 20_000);
    await broker.restart();
    await until(() => dropped.status().connected, 'the session connected', 20_000);
    await broker.stop();
    await until(() => !dropped.status().connected && dropped.status().reconnectDelayMs !== null, 'the wait after the drop', 20_000);
    // 40 ms ±25% at most (the long cap would be 10 ms doubled eight times: 2.56 s).
    expect(dropped.status().reconnectDelayMs).toBeLessThanOrEqual(50);
  });

  it('backs off to the long cap when the broker keeps dropping it soon after connecting (another client with its clientId)', async () => {
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const clientId = `clash-${randomUUID()}`;
    session(broker.url, clientId);
    // Each connect of one drops the other (session taken over): they must not flap at the short cap.
    expect(await waitAfterSixFailures(broker.url, clientId)).toBeGreaterThanOrEqual(480);
  });
});
