/**
 * The standing reliability suite. `npm test` runs its quick form; `npm run soak` (SOAK=1) the long
 * form, for SOAK_MINUTES (default 60). Both print the same table: inputs tried, refused, crashes,
 * hangs, runaway memory, and for the line kill -9 rounds, broker outages, lost events and RSS.
 *
 * Every choice comes from a seeded PRNG: a failure prints its seed, and
 * `FUZZ_SEED=<seed> npx vitest run test/reliability` repeats the same run.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/daemon.js';
import { fuzzConfigs } from './configs.js';
import { fuzzBundles, fuzzHttp, fuzzMqtt } from './daemon-fuzz.js';
import { Draw, fuzzSeed } from './draw.js';
import { fuzzFrames } from './frames.js';
import { Line } from './line.js';
import { knownIssues, plan } from './plan.js';
import { Tally } from './tally.js';

const seed = fuzzSeed();
const tally = new Tally(seed, knownIssues);

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});
const MB = 1024 ** 2;

afterAll(() => {
  console.log(tally.table(plan.soak ? `linewatch soak, ${plan.minutes} minutes` : 'linewatch reliability, quick form'));
});

describe(`reliability (${plan.soak ? 'soak' : 'quick'})`, () => {
  it('refuses mutated configs and env overrides with a ConfigError', async () => {
    await fuzzConfigs(tally, new Draw(seed), tempDir(), plan.configs, Date.now() + plan.inProcessMs);
    expect(tally.unexpected()).toEqual([]);
  }, plan.inProcessMs + 60_000);

  it('decodes or refuses corrupt and hostile frames', async () => {
    await fuzzFrames(tally, new Draw(seed + 1), plan.frames, Date.now() + plan.inProcessMs);
    expect(tally.unexpected()).toEqual([]);
  }, plan.inProcessMs + 60_000);

  it('loses no logged event across kill -9 at random points and broker outages at full rate, and keeps deciding through the fuzz', async () => {
    const draw = new Draw(seed + 2);
    const line = await Line.open(tempDir());
    cleanups.push(() => line.close());

    const points: string[] = [];
    const killUntil = Date.now() + plan.killMs;
    for (let round = 0; round < plan.killRounds && Date.now() < killUntil; round++) points.push(await line.killRound(draw));
    tally.line.push(['kill -9 rounds (integrity_check ok after each)', `${points.length}: ${points.slice(0, 6).join(', ')}${points.length > 6 ? ', ...' : ''}`]);

    await line.start();
    await line.outage(plan.outageEvents);
    let outages = 1;
    const rss = [line.rss()];
    // RSS and V8 heap over time: a plateau is warm-up (page cache, heap sizing), a steady climb a leak.
    const started = Date.now();
    const samples = [{ at: 0, rss: rss[0]!, heap: await line.heapUsed() }];
    const decidedBefore = await line.decided();
    const runUntil = Date.now() + plan.runMs;
    let nextBounce = Date.now() + plan.bounceEveryMs;
    const configDir = tempDir();
    do {
      await fuzzHttp(tally, draw, line, plan.http);
      await fuzzMqtt(tally, draw, line, plan.mqtt);
      await fuzzBundles(tally, draw, line, plan.bundles);
      if (plan.soak) await fuzzConfigs(tally, draw, configDir, 200);
      if (plan.soak) await fuzzFrames(tally, draw, 100);
      if (Date.now() >= nextBounce) {
        await line.outage(plan.outageEvents);
        outages++;
        nextBounce = Date.now() + plan.bounceEveryMs;
      }
      rss.push(line.rss());
      if (Date.now() - started - samples.at(-1)!.at >= 60_000) samples.push({ at: Date.now() - started, rss: rss.at(-1)!, heap: await line.heapUsed() });
    } while (Date.now() < runUntil);
    samples.push({ at: Date.now() - started, rss: line.rss(), heap: await line.heapUsed() });
    const daemon = line.daemon!;
    expect(daemon.child.exitCode, 'the daemon is still running after the fuzz').toBeNull();
    const decidedAfter = await line.decided();
    // It still decides: a frame or more once the fuzz is over.
    await expect.poll(() => line.decided(), { timeout: 30_000, message: 'decisions after the fuzz' }).toBeGreaterThan(decidedAfter);

    const account = await line.finish();
    tally.line.push(
      ['broker outages at full rate', `${outages} (${plan.outageEvents} events stored while down, each)`],
      ['frames decided by the last daemon while fuzzed', `${decidedAfter - decidedBefore}`],
      ['events logged (all runs)', `${account.logged}`],
      ['received by the subscriber', `${account.received}`],
      ['still in the outbox', `${account.inOutbox}`],
      ['**lost events**', `${account.lost.length}`],
      ['integrity_check at the end', line.integrity()],
      ['daemon RSS start / end / max (MB)', `${Math.round(rss[0]! / MB)} / ${Math.round(rss[rss.length - 1]! / MB)} / ${Math.round(Math.max(...rss) / MB)}`],
      ['daemon RSS / V8 heap used (MB) by minute', samples.map((s) => `${Math.round(s.at / 60_000)}: ${Math.round(s.rss / MB)}/${Math.round(s.heap / MB)}`).join(', ')],
    );
    expect(account.lost.slice(0, 10), `seed ${seed}: logged event ids neither received nor in the outbox`).toEqual([]);
    expect(line.integrity()).toBe('ok');
    expect(line.runs.map((r) => r.stderr()).join('\n')).not.toMatch(/unhandledRejection|uncaughtException/);
    expect(tally.unexpected()).toEqual([]);
  }, plan.soak ? plan.minutes * 60_000 * 1.2 : 600_000);
});
