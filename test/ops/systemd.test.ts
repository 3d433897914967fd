import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../dist/config/index.js';
import { repoRoot } from '../helpers/daemon.js';

const unit = join(repoRoot, 'systemd/linewatch.service');
const analyze = '/usr/bin/systemd-analyze';
const present = existsSync(analyze);

/** `Key=value` lines of the unit (a key may repeat). */
function settings(): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of readFileSync(unit, 'utf8').split('\n')) {
    const match = line.match(/^([A-Za-z]+)=(.*)$/);
    if (match) map.set(match[1]!, [...(map.get(match[1]!) ?? []), match[2]!]);
  }
  return map;
}

describe.skipIf(!present)('systemd unit (systemd-analyze; install the Debian package "systemd" if this is skipped)', () => {
  it('has an overall exposure of at most 2.5', () => {
    const result = spawnSync(analyze, ['security', '--offline=yes', '--no-pager', unit], { encoding: 'utf8' });
    const match = `${result.stdout}${result.stderr}`.match(/Overall exposure level for linewatch\.service: (\d+\.\d+)/);
    expect(match, result.stdout + result.stderr).not.toBeNull();
    expect(Number(match![1])).toBeLessThanOrEqual(2.5);
  });

  /** What systemd-analyze verify says about a unit file: nothing when it is clean. */
  function verify(path: string): string {
    // systemd 252 exits 0 on "Unknown key ... ignoring", so silence is the pass, not the exit code.
    const result = spawnSync(analyze, ['verify', path], { encoding: 'utf8' });
    return `${result.stdout}${result.stderr}`.trim() || (result.status === 0 ? '' : `exit ${result.status}`);
  }

  it('passes systemd-analyze verify without a complaint', () => {
    expect(verify(unit)).toBe('');
  });

  it('would catch a misspelt directive (the check above can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'linewatch-unit-'));
    const misspelt = join(dir, 'linewatch.service');
    writeFileSync(misspelt, readFileSync(unit, 'utf8').replace(/^NotifyAccess=/m, 'NotifyAcess='));
    expect(verify(misspelt)).toMatch(/Unknown key 'NotifyAcess' in section \[Service\]/);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('systemd unit settings the daemon depends on', () => {
  it('keeps what V8, the camera and the shutdown flush need', () => {
    const s = settings();
    expect(s.get('Type')).toEqual(['notify']);
    expect(s.get('NotifyAccess')).toEqual(['main']);
    expect(s.get('StateDirectory')).toEqual(['linewatch']);
    // V8 needs writable executable memory; DynamicUser would hide /tmp/argus_socket behind a private /tmp.
    expect(s.get('MemoryDenyWriteExecute')).toEqual(['no']);
    expect(s.get('DynamicUser')).toBeUndefined();
    expect(s.get('BindPaths')).toContain('-/tmp/argus_socket');
    expect(s.get('SupplementaryGroups')?.join(' ')).toMatch(/\bvideo\b/);
    expect(s.get('DeviceAllow')).toContain('char-video4linux rw');
    // The outbox flush on stop (mqtt.flushTimeoutS) plus `offline`, the pipeline and closing must fit in TimeoutStopSec.
    const stop = Number(s.get('TimeoutStopSec')![0]!.replace(/s$/, ''));
    expect(stop).toBeGreaterThanOrEqual(configSchema.parse({}).mqtt.flushTimeoutS + 15);
  });
});
