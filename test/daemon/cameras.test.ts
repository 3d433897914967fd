import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import sharp from 'sharp';
import YAML from 'yaml';
import { makeLabeledImages, runCommand, runLinewatch, tempDir, tinyModel, writeConfig } from '../helpers/daemon.js';
import { collectMessages, freePort, startMosquitto } from '../helpers/mosquitto.js';
import { baseUrl, get, makeFrames, until } from '../ops/helpers.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface CameraEntry {
  key: string;
  camera: string;
  capture: { source: string; kind: string; state: string; framesReceived: number; droppedWhileBusy: number };
  decisions: { classified: number; anomalies: number };
}

const status = async (url: string) => JSON.parse((await get(`${url}/status`)).body) as { capture: { source: string }; cameras: CameraEntry[]; decisions: { classified: number } };

/** A GStreamer test camera (videotestsrc), small frames at a steady rate; raw frames unless `frames` says jpeg. */
const testCamera = (frames: 'auto' | 'jpeg' = 'auto') => ({ source: 'gstreamer', frames, gstreamer: { preset: 'test', width: 32, height: 32, fps: 30 } });

it('runs three real GStreamer cameras in one daemon: events on each camera\'s own topic, per-camera status and counts, and a reload of the list (rolled back whole when a camera cannot start)', async () => {
  const dir = tempDir();
  const broker = await startMosquitto();
  cleanups.push(() => broker.stop());
  const events = await collectMessages(broker.url, 'linewatch/multi/+/+/events');
  cleanups.push(() => events.close());
  const stats = await collectMessages(broker.url, 'linewatch/multi/line-1/stats', { qos: 0 });
  cleanups.push(() => stats.close());
  const cameras = [
    { camera: 'top', capture: testCamera() },
    { camera: 'side', capture: testCamera('jpeg'), roi: { x: 0, y: 0, width: 16, height: 16 } },
    { camera: 'top', line: 'line-2', capture: testCamera() },
  ];
  const settings = {
    site: 'multi',
    line: 'line-1',
    cameras,
    stateDir: join(dir, 'state'),
    model: tinyModel,
    enroll: { folder: await makeLabeledImages(join(dir, 'refs')) },
    // Every frame is an anomaly: each camera's events show where its frames went.
    knn: { threshold: 0 },
    mqtt: { url: broker.url, statsIntervalS: 1 },
    // A fixed port, so linewatch status finds the daemon from the same file.
    http: { port: await freePort() },
    log: { format: 'json' },
  };
  const config = writeConfig(dir, settings);
  const daemon = runLinewatch(['run', '--config', config]);
  cleanups.push(() => daemon.stop('SIGKILL'));
  const url = baseUrl(await daemon.waitForLog((l) => l.msg === 'running'));

  // Each camera's events arrive on its own topic and name its own levels.
  const topics = ['linewatch/multi/line-1/top/events', 'linewatch/multi/line-1/side/events', 'linewatch/multi/line-2/top/events'];
  await events.waitFor((m) => topics.every((topic) => m.filter((e) => e.topic === topic).length >= 5), 30_000);
  for (const message of events.messages) {
    const { site, line, camera } = JSON.parse(message.payload) as { site: string; line: string; camera: string };
    expect(message.topic).toBe(`linewatch/${site}/${line}/${camera}/events`);
  }

  // Each camera's ROI crops its own frames. The side camera sends JPEG: its anomaly images are its
  // 16x16 corner. The top camera sends raw frames, cropped and scaled in its pipeline: its images
  // are what the model saw, 28x28.
  const imageSize = async (topic: string) => {
    const { image } = JSON.parse(events.messages.find((m) => m.topic === topic)!.payload) as { image: { path: string } };
    let size = '';
    await until(async () => {
      const response = await fetch(`${url}${image.path}`);
      if (response.status !== 200) return false;
      const { width, height } = await sharp(Buffer.from(await response.arrayBuffer())).metadata();
      size = `${width}x${height}`;
      return true;
    }, `the anomaly image of an event on ${topic}`);
    return size;
  };
  expect(await imageSize(topics[1]!)).toBe('16x16');
  expect(await imageSize(topics[0]!)).toBe('28x28');

  // Per-camera status: each camera's capture and the decisions of its frames; they add up to the totals.
  await until(async () => (await status(url)).cameras.every((c) => c.decisions.classified >= 30), 'every camera with 30 frames decided');
  const s = await status(url);
  expect(s.cameras.map((c) => c.key)).toEqual(['multi/line-1/top', 'multi/line-1/side', 'multi/line-2/top']);
  expect(s.cameras.map((c) => c.capture.state)).toEqual(['running', 'running', 'running']);
  for (const c of s.cameras) expect(c.decisions.anomalies).toBe(c.decisions.classified);
  expect(s.capture.source).toBe(s.cameras[0]!.capture.source);
  // Fair shares, by counts: no camera has fewer than half the decisions of the busiest one.
  const counts = s.cameras.map((c) => c.decisions.classified);
  expect(Math.min(...counts), `decisions per camera ${counts}`).toBeGreaterThanOrEqual(Math.max(...counts) / 2);
  // The stats message gives each camera's share of its counts.
  type StatsCamera = { camera: string; state: string; frames: { captured: number }; decisions: { classified: number; anomalies: number } };
  const [message] = await stats.waitFor((m) => m.length > 0 && (JSON.parse(m.at(-1)!.payload) as { cameras: StatsCamera[] }).cameras.every((c) => c.decisions.classified > 0), 20_000).then((m) => m.slice(-1));
  const body = JSON.parse(message!.payload) as { frames: { captured: number }; decisions: { classified: number }; cameras: StatsCamera[] };
  expect(body.cameras.map((c) => [c.camera, c.state])).toEqual([['multi/line-1/top', 'running'], ['multi/line-1/side', 'running'], ['multi/line-2/top', 'running']]);
  expect(body.cameras.reduce((n, c) => n + c.decisions.classified, 0)).toBe(body.decisions.classified);
  expect(body.cameras.reduce((n, c) => n + c.frames.captured, 0)).toBe(body.frames.captured);
  for (const c of body.cameras) expect(c.decisions.anomalies).toBe(c.decisions.classified);
  // The web UI's live page of one camera: a link per camera, and that camera's latest frame, with its ROI.
  const livePage = (await get(`${url}/ui/live?camera=${encodeURIComponent('multi/line-1/side')}`)).body;
  expect(livePage.match(/<nav class="cameras".*?<\/nav>/)![0].match(/<a /g)).toHaveLength(4);
  expect(livePage).toContain('aria-current="true">multi/line-1/side</a>');
  const shown = JSON.parse(livePage.match(/<script type="application\/json" id="live-data">(.*?)<\/script>/)![1]!) as { latest: { camera: string; id: number; roi: unknown } };
  expect(shown.latest).toMatchObject({ camera: 'multi/line-1/side', roi: { x: 0, y: 0, width: 16, height: 16 } });
  const cli = await runCommand(['status', '--config', config]);
  expect(cli.stdout).toMatch(/^camera multi\/line-1\/side: \S+ running, \d+ frames, \d+ dropped, \d+ restarts, [1-9]\d* decided$/m);
  expect(cli.stdout.match(/^camera /gm)).toHaveLength(3);
  const metrics = (await get(`${url}/metrics`)).body;
  for (const key of ['multi/line-1/top', 'multi/line-1/side', 'multi/line-2/top']) {
    expect(metrics).toMatch(new RegExp(`^linewatch_decisions_total\\{result="anomaly",camera="${key}"\\} [1-9]\\d*$`, 'm'));
  }

  // A reload that changes the first camera's source and adds a camera that cannot start changes
  // nothing: the first camera gets its old source back, and every camera runs as before.
  const replay = { source: 'replay', replay: { folder: await makeFrames(join(dir, 'frames'), 4), fps: 10 } };
  const broken = { camera: 'new', capture: { source: 'replay', replay: { folder: join(dir, 'missing') } } };
  writeFileSync(config, YAML.stringify({ ...settings, cameras: [{ ...cameras[0], capture: replay }, cameras[1], cameras[2], broken] }));
  daemon.child.kill('SIGHUP');
  const failed = await daemon.waitForLog((l) => l.msg === 'new configuration not fully applied');
  expect(String(failed['error'])).toContain(join(dir, 'missing'));
  expect((await status(url)).cameras.map((c) => `${c.key} ${c.capture.kind}`)).toEqual(['multi/line-1/top gstreamer', 'multi/line-1/side gstreamer', 'multi/line-2/top gstreamer']);
  const before = (await status(url)).cameras.map((c) => c.decisions.classified);
  await until(async () => (await status(url)).cameras.every((c, i) => c.decisions.classified > before[i]! + 5), 'every camera deciding frames again after the refused reload');

  // A good reload removes two cameras and keeps the first running.
  writeFileSync(config, YAML.stringify({ ...settings, cameras: [cameras[0]] }));
  daemon.child.kill('SIGHUP');
  await daemon.waitForLog((l) => l.msg === 'configuration reloaded');
  const after = await status(url);
  expect(after.cameras.map((c) => c.key)).toEqual(['multi/line-1/top']);
  const decided = after.cameras[0]!.decisions.classified;
  await until(async () => (await status(url)).cameras[0]!.decisions.classified > decided + 5, 'the remaining camera deciding frames');
  expect(await daemon.stop()).toBe(0);
}, 180_000);
