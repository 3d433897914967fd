import { afterEach, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { execFileSync } from 'node:child_process';
import { createFrameSource, restartDelay, type Frame, type FrameSource } from '../../dist/capture/index.js';
import { UserError } from '../../dist/common/index.js';
import { captureLogs, isJpeg, waitFor } from './helpers.js';

const logs = captureLogs();

/** Restart delays the named source logged, in order. */
function restartDelays(name: string): number[] {
  return logs
    .map((line) => JSON.parse(line) as { component: string; msg: string; inMs?: number })
    .filter((entry) => entry.component === `capture.${name}` && entry.msg === 'capture process restarting')
    .map((entry) => entry.inMs!);
}

/** The gst-launch-1.0 process this test process started (one source at a time runs). */
function gstChild(): number {
  const pids = execFileSync('pgrep', ['-P', String(process.pid), '-x', 'gst-launch-1.0'], { encoding: 'utf8' }).trim().split('\n');
  expect(pids).toHaveLength(1);
  return Number(pids[0]);
}

// Fast restarts keep the suite short; the defaults are for a real camera.
const quick = { restartInitialMs: 50, restartMaxMs: 400, stopGraceMs: 500 };

describe('gstreamer source', () => {
  let source: FrameSource | undefined;
  afterEach(async () => {
    await source?.stop();
    source = undefined;
  });

  it('streams valid JPEG frames from the test preset through one gst-launch process', async () => {
    source = createFrameSource({ kind: 'gstreamer', preset: 'test', width: 64, height: 48, fps: 30, ...quick });
    const frames: Frame[] = [];
    await source.start((frame) => void frames.push(frame));
    await waitFor(() => frames.length >= 5, 10_000, '5 frames');
    expect(frames.every((frame) => isJpeg(frame.data))).toBe(true);
    expect(frames.map((f) => f.seq).slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    expect(frames[0]!.origin).toBe('gstreamer-test');
    const metadata = await sharp(frames[2]!.data).metadata();
    expect(metadata).toMatchObject({ format: 'jpeg', width: 64, height: 48 });
    expect(source.status()).toMatchObject({ kind: 'gstreamer', state: 'running', restarts: 0, framesDropped: 0, lastError: null });

    await source.stop();
    await source.ended();
    const count = frames.length;
    expect(source.status().state).toBe('stopped');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(frames.length).toBe(count);
  });

  it('restarts a pipeline that ends, with growing restarts and frames still arriving', async () => {
    source = createFrameSource({
      kind: 'gstreamer',
      preset: 'pipeline',
      pipeline: 'videotestsrc num-buffers=5 ! video/x-raw,width=32,height=24 ! jpegenc',
      ...quick,
    });
    const frames: Frame[] = [];
    await source.start((frame) => void frames.push(frame));
    await waitFor(() => source!.status().restarts >= 2 && frames.length >= 15, 15_000, 'two restarts');
    const status = source.status();
    expect(status.lastError).toMatch(/gst-launch-1\.0 exited with code 0/);
    expect(status.framesDropped).toBe(0);
    expect(frames.every((frame) => isJpeg(frame.data))).toBe(true);
    expect(new Set(frames.map((f) => f.seq)).size).toBe(frames.length); // seq keeps counting across restarts
  });

  it('backs off exponentially up to the maximum only while runs in a row give no frame', async () => {
    // The camera is gone: every run fails before a frame.
    const pipeline = 'filesrc location=/linewatch-no-such-camera ! jpegparse';
    source = createFrameSource({ kind: 'gstreamer', preset: 'pipeline', pipeline, name: 'gone', ...quick, restartMaxMs: 200 });
    await source.start(() => {});
    await waitFor(() => restartDelays('gone').length >= 4, 15_000, 'four restarts');
    expect(restartDelays('gone').slice(0, 4)).toEqual([50, 100, 200, 200]);
  });

  it('restarts a camera that delivered frames after restartInitialMs every time, however often it fails', async () => {
    // Each run gives two frames, then ends: a camera that works but hiccups.
    const pipeline = 'videotestsrc num-buffers=2 ! video/x-raw,width=16,height=16 ! jpegenc';
    source = createFrameSource({ kind: 'gstreamer', preset: 'pipeline', pipeline, name: 'hiccups', ...quick });
    await source.start(() => {});
    await waitFor(() => restartDelays('hiccups').length >= 4, 15_000, 'four restarts');
    expect(restartDelays('hiccups').slice(0, 4)).toEqual([50, 50, 50, 50]);
  });

  it('brings frames back each time the camera process is killed, several times in a row, at restartInitialMs', async () => {
    source = createFrameSource({ kind: 'gstreamer', preset: 'test', width: 32, height: 24, fps: 30, name: 'killed', ...quick, restartInitialMs: 200 });
    const frames: Frame[] = [];
    await source.start((frame) => void frames.push(frame));
    for (let kill = 1; kill <= 4; kill++) {
      await waitFor(() => source!.status().state === 'running', 15_000, `frames before kill ${kill}`);
      const before = frames.length;
      process.kill(gstChild(), 'SIGKILL');
      await waitFor(() => source!.status().restarts === kill, 15_000, `restart ${kill}`);
      await waitFor(() => frames.length > before + 2, 15_000, `frames again after kill ${kill}`);
    }
    expect(restartDelays('killed')).toEqual([200, 200, 200, 200]);
    expect(source.status().lastError).toMatch(/gst-launch-1\.0 was killed by SIGKILL/);
  });

  it('plans delays: initial after a run with frames, doubling to the maximum for runs without', () => {
    const options = { restartInitialMs: 1000, restartMaxMs: 30_000 };
    const plan = (runs: boolean[]) => {
      let delay = 0;
      return runs.map((delivered) => (delay = restartDelay(delay, delivered, options)));
    };
    expect(plan([true, true, true, true, true])).toEqual([1000, 1000, 1000, 1000, 1000]);
    expect(plan([false, false, false, false, false, false, false])).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    expect(plan([false, false, false, true, false])).toEqual([1000, 2000, 4000, 1000, 2000]);
  });

  it('kills and restarts a process that stays alive but sends nothing', async () => {
    source = createFrameSource({
      kind: 'gstreamer',
      preset: 'pipeline',
      pipeline: 'videotestsrc is-live=true ! valve drop=true ! jpegenc',
      stallTimeoutMs: 400,
      ...quick,
    });
    await source.start(() => {});
    await waitFor(() => source!.status().restarts >= 1, 10_000, 'a stall restart');
    expect(source.status().lastError).toMatch(/no frame for 400 ms/);
    expect(source.status().framesReceived).toBe(0);
  });

  it('reports gst-launch errors from its stderr', async () => {
    source = createFrameSource({ kind: 'gstreamer', preset: 'usb', device: '/dev/linewatch-no-camera', ...quick });
    await source.start(() => {});
    await waitFor(() => source!.status().lastError !== null, 10_000, 'an error');
    expect(source.status().lastError).toMatch(/Cannot identify device '\/dev\/linewatch-no-camera'/);
    expect(['restarting', 'starting']).toContain(source.status().state);
  });

  it('on a machine without Jetson camera support, says which element is missing and about nvargus-daemon', async () => {
    source = createFrameSource({ kind: 'gstreamer', preset: 'jetson-csi', sensorId: 1, ...quick });
    await source.start(() => {});
    await waitFor(() => source!.status().lastError !== null, 10_000, 'an error');
    expect(source.status().lastError).toMatch(/no element "nvarguscamerasrc".*nvargus-daemon/);
  });

  it('names a missing gst-launch-1.0 with an install hint and keeps retrying', async () => {
    const path = process.env['PATH'];
    process.env['PATH'] = '/linewatch-nothing-here';
    try {
      source = createFrameSource({ kind: 'gstreamer', preset: 'test', ...quick });
      await source.start(() => {});
      await waitFor(() => source!.status().restarts >= 2, 5_000, 'retries');
    } finally {
      process.env['PATH'] = path;
    }
    expect(source.status().lastError).toMatch(/gst-launch-1\.0 not found on PATH.*apt-get install gstreamer1\.0-tools gstreamer1\.0-plugins-good/);
  });

  it('refuses option values that could change the pipeline', () => {
    expect(() => createFrameSource({ kind: 'gstreamer', preset: 'usb', device: '/dev/video0 ! fakesink' })).toThrow(UserError);
    expect(() => createFrameSource({ kind: 'gstreamer', preset: 'test', width: 0 })).toThrow(/width must be a positive integer/);
    expect(() => createFrameSource({ kind: 'gstreamer', preset: 'pipeline', pipeline: 'videotestsrc ! jpegenc ! fakesink' })).toThrow(/without a sink/);
    expect(() => createFrameSource({ kind: 'gstreamer', preset: 'pipeline' })).toThrow(/needs a pipeline description/);
  });
});
