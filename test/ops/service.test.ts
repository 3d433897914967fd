import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { makeLabeledImages, repoRoot, runLinewatch, tempDir, tinyModel, writeConfig, type RunningLinewatch } from '../helpers/daemon.js';
import { killIfStillSuspended, suspendProcess } from '../helpers/processes.js';
import { baseUrl, count, get, makeFrames, startNotifyListener, until } from './helpers.js';

const stallingModel = join(repoRoot, 'test/fixtures/tiny-model-stalls');

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function track(run: RunningLinewatch): RunningLinewatch {
  cleanups.push(() => run.stop('SIGKILL'));
  return run;
}

const gstLaunch = 'gst-launch-1.0';

/** Stops the daemon's camera process (SIGSTOP) and returns its PID. */
async function suspendCamera(daemonPid: number): Promise<number> {
  const pids = execFileSync('pgrep', ['-P', String(daemonPid), '-x', gstLaunch], { encoding: 'utf8' }).trim().split('\n');
  expect(pids).toHaveLength(1);
  const pid = Number(pids[0]);
  await suspendProcess(pid, gstLaunch);
  return pid;
}

async function baseConfig(dir: string, capture: Record<string, unknown>): Promise<Record<string, unknown>> {
  return {
    site: 'ops',
    line: 'line-1',
    camera: 'cam-1',
    stateDir: join(dir, 'state'),
    model: tinyModel,
    // The health check calls frames stale after this long (replay has no other use for it).
    capture: { stallTimeoutMs: 1500, ...capture },
    enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
    mqtt: { enabled: false },
    http: { port: 0 },
    log: { format: 'json' },
  };
}

describe('systemd notify and watchdog (real NOTIFY_SOCKET)', () => {
  it('says READY=1 once frames arrive, pings WATCHDOG=1 while frames are decided, stops pinging while the camera is wedged, and resumes', async () => {
    // A real GStreamer camera, wedged by SIGSTOP on its gst-launch process: it stays alive and
    // delivers nothing, as a hung camera driver does. The supervisor's answer (SIGTERM at the
    // stall, SIGKILL 2 s later, then a restart after restartInitialMs) resumes it; restartInitialMs
    // keeps that restart well after the checks on the wedged daemon.
    const dir = tempDir();
    const notify = await startNotifyListener(dir);
    cleanups.push(() => notify.close());
    const camera = { source: 'gstreamer', gstreamer: { preset: 'test', width: 32, height: 32, fps: 20 }, restartInitialMs: 15_000 };
    const config = writeConfig(dir, await baseConfig(dir, camera));
    const daemon = track(runLinewatch(['run', '--config', config], { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '1000000' }));
    const running = await daemon.waitForLog((l) => l.msg === 'running');
    const url = baseUrl(running);

    await notify.waitFor((m) => count(m, 'READY=1') === 1, 30_000, 'READY=1');
    await notify.waitFor((m) => count(m, 'WATCHDOG=1') >= 2, 30_000, 'watchdog pings while frames are decided');
    // The daemon's own PID sent them (not a helper process), so the unit keeps NotifyAccess=main.
    expect(new Set(notify.senders)).toEqual(new Set([daemon.child.pid]));
    const ready = notify.messages.find((m) => m.includes('READY=1'))!;
    expect(ready).toMatch(/STATUS=running: tiny-test on cpu/);

    const camProcess = await suspendCamera(daemon.child.pid!);
    // Should the test fail before the supervisor kills it, a stopped orphan would stay behind.
    cleanups.push(() => killIfStillSuspended(camProcess, gstLaunch));
    await until(async () => (await get(`${url}/healthz`)).status === 503, '/healthz reports frames not flowing');
    const health = JSON.parse((await get(`${url}/healthz`)).body) as { ok: boolean; failing: string[] };
    expect(health.ok).toBe(false);
    expect(health.failing.join(' ')).toMatch(/no frame captured for \d+ s/);
    const pingsWhenWedged = count(notify.messages, 'WATCHDOG=1');
    // Three watchdog intervals without a ping: systemd would have restarted the service.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(count(notify.messages, 'WATCHDOG=1')).toBe(pingsWhenWedged);
    expect(daemon.child.exitCode).toBeNull();

    // The supervisor replaces the wedged camera process; decisions resume, and so do the pings.
    await daemon.waitForLog((l) => l.msg === 'capture stalled, restarting');
    await notify.waitFor((m) => count(m, 'WATCHDOG=1') > pingsWhenWedged, 60_000, 'pings after the restarted camera delivers');
    expect(await daemon.stop()).toBe(0);
    expect(notify.messages.at(-1)).toBe('STOPPING=1');
  });

  it('stops pinging WATCHDOG=1 while inference hangs, though the camera still delivers frames', async () => {
    // tiny-model-stalls (test/fixtures/make_stalling_model.py) never finishes a batch holding a
    // bright frame; every other frame gets the tiny model's vector. The camera (real GStreamer,
    // which drops frames rather than wait, like a real camera) shows a ball on black for 5 s,
    // then white for ever.
    const dir = tempDir();
    const notify = await startNotifyListener(dir);
    cleanups.push(() => notify.close());
    const caps = 'video/x-raw,width=28,height=28,framerate=20/1';
    const pipeline = `videotestsrc num-buffers=100 pattern=ball ! ${caps} ! c. videotestsrc pattern=white ! ${caps} ! c. concat name=c ! identity sync=true ! videoconvert ! jpegenc`;
    const config = writeConfig(dir, {
      // A short queue, so the frames that keep coming are dropped rather than held.
      ...(await baseConfig(dir, { source: 'gstreamer', gstreamer: { preset: 'custom', pipeline }, queueSize: 2 })),
      model: stallingModel,
    });
    const daemon = track(runLinewatch(['run', '--config', config], { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '1000000' }));
    const url = baseUrl(await daemon.waitForLog((l) => l.msg === 'running'));
    const metric = async (series: string) => Number((await get(`${url}/metrics`)).body.match(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm'))?.[1]);
    await until(async () => (await metric('linewatch_frames_classified_total{camera="ops/line-1/cam-1"}')) > 0, 'frames of the ball decided');
    await notify.waitFor((m) => count(m, 'WATCHDOG=1') >= 2, 30_000, 'watchdog pings while frames are decided');

    // The camera turns white: inference hangs, and health names the decisions, not the camera.
    await until(async () => (await get(`${url}/healthz`)).status === 503, '/healthz reports frames not decided');
    const health = JSON.parse((await get(`${url}/healthz`)).body) as { failing: string[] };
    expect(health.failing.join(' ')).toMatch(/no frame decided for \d+ s/);
    const decided = await metric('linewatch_frames_classified_total{camera="ops/line-1/cam-1"}');
    const dropped = await metric('linewatch_frames_dropped_total{reason="queue_full",camera="ops/line-1/cam-1"}');
    const pingsWhenHung = count(notify.messages, 'WATCHDOG=1');
    // Three watchdog intervals without a ping (systemd would have restarted the service) while
    // the camera kept delivering (into a full queue) and nothing was decided.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await until(async () => (await metric('linewatch_frames_dropped_total{reason="queue_full",camera="ops/line-1/cam-1"}')) > dropped, 'frames still captured (and dropped) while inference hangs');
    expect(count(notify.messages, 'WATCHDOG=1')).toBe(pingsWhenHung);
    expect(await metric('linewatch_frames_classified_total{camera="ops/line-1/cam-1"}')).toBe(decided);
    expect(daemon.child.exitCode).toBeNull();
  });

  it('serves /healthz and Prometheus /metrics while frames flow', async () => {
    const dir = tempDir();
    const frames = await makeFrames(join(dir, 'frames'), 12);
    const config = writeConfig(dir, { ...(await baseConfig(dir, { source: 'replay', replay: { folder: frames, fps: 20, loop: true } })), knn: { threshold: 0 } });
    const daemon = track(runLinewatch(['run', '--config', config]));
    const url = baseUrl(await daemon.waitForLog((l) => l.msg === 'running'));
    await daemon.waitForLog((_, all) => all.filter((l) => l.msg === 'anomaly').length >= 3);

    const health = await get(`${url}/healthz`);
    expect(health.status, health.body).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ ok: true, failing: [], model: 'tiny-test@1', provider: 'cpu' });

    const metrics = await get(`${url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const value = (pattern: RegExp) => {
      const match = metrics.body.match(pattern);
      expect(match, `${pattern} in\n${metrics.body.slice(0, 3000)}`).not.toBeNull();
      return Number(match![1]);
    };
    const classified = value(/^linewatch_frames_classified_total\{camera="ops\/line-1\/cam-1"\} (\d+)$/m);
    expect(classified).toBeGreaterThanOrEqual(3);
    expect(value(/^linewatch_frames_captured_total\{camera="ops\/line-1\/cam-1"\} (\d+)$/m)).toBeGreaterThanOrEqual(classified);
    // Threshold 0: every decision is an anomaly, and each went through every stage.
    expect(value(/^linewatch_decisions_total\{result="anomaly",camera="ops\/line-1\/cam-1"\} (\d+)$/m)).toBe(classified);
    for (const stage of ['preprocess', 'inference', 'classify']) {
      expect(value(new RegExp(`^linewatch_stage_seconds_count\\{stage="${stage}"\\} (\\d+)$`, 'm'))).toBeGreaterThanOrEqual(classified);
    }
    expect(value(/^linewatch_frame_to_outbox_seconds_count (\d+)$/m)).toBeGreaterThanOrEqual(3);
    expect(value(/^linewatch_outbox_backlog (\d+)$/m)).toBeGreaterThanOrEqual(3);
    expect(value(/^linewatch_references\{label="good"\} (\d+)$/m)).toBe(4);
    expect(value(/^linewatch_references\{label="scratch"\} (\d+)$/m)).toBe(4);
    expect(metrics.body).toMatch(/^linewatch_references_by_source\{source="[a-z]+"\} 8$/m);
    expect(metrics.body).toMatch(/^linewatch_model_info\{name="tiny-test",version="1",precision="fp32"\} 1$/m);
    expect(metrics.body).toMatch(/^linewatch_inference_provider_info\{provider="cpu"\} 1$/m);
    expect(metrics.body).toMatch(/^linewatch_anomalies_total\{label="[a-z]+"\} \d+$/m);
    expect(metrics.body).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(await daemon.stop()).toBe(0);
  });

  it('reloads on SIGHUP: a new threshold applies, a bad file is refused with the reason, restart-only keys are reported', async () => {
    const dir = tempDir();
    const frames = await makeFrames(join(dir, 'frames'), 8);
    const settings = { ...(await baseConfig(dir, { source: 'replay', replay: { folder: frames, fps: 20, loop: true } })), knn: { threshold: 0.9 } };
    const config = writeConfig(dir, settings);
    const daemon = track(runLinewatch(['run', '--config', config]));
    const url = baseUrl(await daemon.waitForLog((l) => l.msg === 'running'));
    const threshold = async () => (JSON.parse((await get(`${url}/status`)).body) as { classifier: { threshold: number } }).classifier.threshold;
    expect(await threshold()).toBe(0.9);

    writeFileSync(config, YAML.stringify({ ...settings, knn: { threshold: 0.25 } }));
    daemon.child.kill('SIGHUP');
    const reloaded = await daemon.waitForLog((l) => l.msg === 'configuration reloaded');
    expect(reloaded['changed']).toEqual(['knn.threshold']);
    expect(await threshold()).toBe(0.25);

    writeFileSync(config, YAML.stringify({ ...settings, knn: { threshold: 7 } }));
    daemon.child.kill('SIGHUP');
    const refused = await daemon.waitForLog((l) => l.msg === 'new configuration refused; the one in force stays');
    expect(String(refused['error'])).toMatch(/knn\.threshold/);
    expect(await threshold()).toBe(0.25);

    writeFileSync(config, YAML.stringify({ ...settings, knn: { threshold: 0.25 }, stateDir: join(dir, 'elsewhere') }));
    daemon.child.kill('SIGHUP');
    const restart = await daemon.waitForLog((l) => l.msg === 'configuration keys that apply only after a restart');
    expect(restart['keys']).toEqual(['stateDir']);
    const status = JSON.parse((await get(`${url}/status`)).body) as { problems: string[] };
    expect(status.problems.join(' ')).toMatch(/stateDir: restart linewatch/);
    expect(await daemon.stop()).toBe(0);
  });
});
