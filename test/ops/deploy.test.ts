import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tensorRtCacheDir } from '../../dist/models/tensorrt.js';
import { repoRoot, tempDir } from '../helpers/daemon.js';

const scripts = ['deploy/install.sh', 'deploy/build-release.sh', 'deploy/mosquitto/make-certs.sh', 'deploy/jetson/build-onnxruntime-tensorrt.sh'];
const shellcheck = '/usr/bin/shellcheck';

describe.skipIf(!existsSync(shellcheck))('deploy scripts pass shellcheck (install the Debian package "shellcheck" if this is skipped)', () => {
  it.each(scripts)('%s', (script) => {
    const result = spawnSync(shellcheck, [join(repoRoot, script)], { encoding: 'utf8' });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});

describe('deploy/install.sh --dry-run', () => {
  const dryRun = (...args: string[]) => spawnSync('bash', [join(repoRoot, 'deploy/install.sh'), '--dry-run', ...args], { encoding: 'utf8' });

  it('prints each step it would take for this machine, and changes nothing', () => {
    const hadConfig = existsSync('/etc/linewatch/config.yml');
    const hadUser = spawnSync('getent', ['passwd', 'linewatch']).status === 0;
    const result = dryRun('--platform', 'pi');
    expect(result.status, result.stderr).toBe(0);
    const out = result.stdout;
    expect(out).toMatch(/^==> platform: pi/m);
    // The release is copied and its native modules built for this machine.
    expect(out).toMatch(/^\+ npm --prefix \/opt\/linewatch\.new ci --omit=dev --ignore-scripts/m);
    expect(out).toMatch(/^\+ npm --prefix \/opt\/linewatch\.new rebuild/m);
    expect(out).toMatch(/^\+ npm --prefix \/opt\/linewatch\.new run postinstall/m);
    expect(out).toMatch(/^\+ mv \/opt\/linewatch\.new \/opt\/linewatch$/m);
    // Each idempotent step is either taken or reported as already done.
    expect(out).toMatch(hadUser ? /^==> user linewatch present: kept$/m : /^\+ useradd --system --user-group .* linewatch$/m);
    expect(out).toMatch(
      hadConfig ? /^==> \/etc\/linewatch\/config\.yml present: kept/m : /^\+ install -m 0640 -o root -g linewatch \S+\/config\/example\.yml \/etc\/linewatch\/config\.yml$/m,
    );
    expect(out).toMatch(/^(\+ systemctl enable linewatch|==> linewatch\.service enabled: kept)$/m);
    // A dry run touches nothing.
    expect(existsSync('/opt/linewatch.new')).toBe(false);
    expect(existsSync('/etc/linewatch/config.yml')).toBe(hadConfig);
    expect(spawnSync('getent', ['passwd', 'linewatch']).status === 0).toBe(hadUser);
  });

  it('refuses an unknown platform or option with what to do', () => {
    const platform = dryRun('--platform', 'windows');
    expect(platform.status).toBe(1);
    expect(platform.stderr).toMatch(/--platform must be jetson, pi or debian/);
    const option = dryRun('--frobnicate');
    expect(option.status).toBe(2);
    expect(option.stderr).toMatch(/unknown option '--frobnicate' \(see --help\)/);
  });
});

describe('deploy/build-release.sh', () => {
  it('packs dist, config, systemd, deploy and the npm files into linewatch-<version>.tar.gz', () => {
    const out = tempDir();
    const printed = execFileSync('bash', [join(repoRoot, 'deploy/build-release.sh'), '--no-build', '--out', out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
    expect(printed).toBe(join(out, `linewatch-${version}.tar.gz`));
    const files = execFileSync('tar', ['tzf', printed], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).split('\n');
    for (const file of ['dist/cli/main.js', 'dist/daemon/notify.js', 'config/example.yml', 'systemd/linewatch.service', 'deploy/install.sh', 'package.json', 'package-lock.json', '.npmrc']) {
      expect(files).toContain(`linewatch-${version}/${file}`);
    }
    expect(files.some((f) => f.includes('node_modules/'))).toBe(false);
  });
});

describe('TensorRT engine cache folder', () => {
  it('changes with the model, the TensorRT version and the GPU, so a stale engine is never loaded', () => {
    const model = { version: '1.2.0', sha256: 'ab'.repeat(32) };
    const base = tensorRtCacheDir('/var/lib/linewatch', model, '10.3.0', 'NVIDIA Jetson Orin Nano');
    expect(base).toBe('/var/lib/linewatch/tensorrt/1.2.0-abababababababab-trt10.3.0-NVIDIA_Jetson_Orin_Nano');
    const variants = [
      tensorRtCacheDir('/var/lib/linewatch', { ...model, sha256: 'cd'.repeat(32) }, '10.3.0', 'NVIDIA Jetson Orin Nano'),
      tensorRtCacheDir('/var/lib/linewatch', { ...model, version: '1.3.0' }, '10.3.0', 'NVIDIA Jetson Orin Nano'),
      tensorRtCacheDir('/var/lib/linewatch', model, '10.4.0', 'NVIDIA Jetson Orin Nano'),
      tensorRtCacheDir('/var/lib/linewatch', model, '10.3.0', 'NVIDIA Jetson AGX Orin'),
    ];
    expect(new Set([base, ...variants]).size).toBe(5);
  });
});

describe('deploy/hnswlib-loader.mjs (npm postinstall) when its edit cannot apply', () => {
  // A copy of the script in a tree of its own, beside an hnswlib-node it cannot patch: the install must go on.
  const runBeside = (header: string | null) => {
    const root = tempDir('linewatch-loader-');
    mkdirSync(join(root, 'deploy'));
    copyFileSync(join(repoRoot, 'deploy/hnswlib-loader.mjs'), join(root, 'deploy/hnswlib-loader.mjs'));
    mkdirSync(join(root, 'node_modules/hnswlib-node/src/hnswlib'), { recursive: true });
    if (header !== null) writeFileSync(join(root, 'node_modules/hnswlib-node/src/hnswlib/hnswalg.h'), header);
    const run = (...args: string[]) => spawnSync(process.execPath, [join(root, 'deploy/hnswlib-loader.mjs'), ...args], { encoding: 'utf8' });
    try {
      return { patch: run(), check: run('--check') };
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  };

  it.each([
    ['an hnswlib-node without its sources', null, /skipped: this hnswlib-node has no src\/hnswlib\/hnswalg\.h/],
    ['another version of the loader', '// another hnswlib\n', /skipped: src\/hnswlib\/hnswalg\.h of this hnswlib-node does not hold the lines the edit expects/],
  ])('leaves %s as published, says so, and lets the install go on', (_what, header, reason) => {
    const { patch, check } = runBeside(header);
    expect(patch.status).toBe(0);
    expect(patch.stdout).toMatch(reason);
    expect(patch.stdout).toMatch(/left as published: everything works/);
    expect(check.status).toBe(1);
    expect(check.stdout).toMatch(/loader as published/);
  });
});
