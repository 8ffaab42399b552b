import t from 'tap';
import { symlink } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { execa } from 'execa';
import { TempDir } from '../../harness/util/tempdir.ts';

// The container image from the Dockerfile, built from Debian's packages by
// scripts/build-image.mjs (npm run image:build): mmdebstrap makes the Debian 12
// base, podman imports it and builds the Dockerfile on it. Where mmdebstrap
// or podman is missing, the build is skipped, saying which; the script's own
// message for that case is checked everywhere.

const root = fileURLToPath(new URL('../../', import.meta.url));
const script = join(root, 'scripts/build-image.mjs');

async function onPath(program: string): Promise<boolean> {
  return (await execa('sh', ['-c', 'command -v "$1"', 'sh', program], { reject: false })).exitCode === 0;
}

t.test('without mmdebstrap and podman the build script says what to install and exits 3', async (t) => {
  // A PATH with bash only (zx runs its commands through bash): no container builder on it.
  await using bin = await TempDir.create('image-path');
  await symlink('/bin/bash', join(bin.path, 'bash'));
  const r = await execa(process.execPath, [script], {
    cwd: root,
    env: { ...process.env, PATH: bin.path },
    reject: false,
    timeout: 60_000,
  });
  t.equal(r.exitCode, 3, r.exitCode === 3 ? 'exit 3, like any missing tool' : r.stderr);
  t.match(r.stderr, /mmdebstrap \(makes the Debian 12 root file system\) is not installed/);
  t.match(r.stderr, /podman \(imports it and builds the Dockerfile\) is not installed/);
  t.match(r.stderr, /Install it with: apt-get install mmdebstrap podman/);
  t.equal(r.stdout, '', 'nothing was built');
});

const missing = [];
for (const program of ['mmdebstrap', 'podman']) if (!(await onPath(program))) missing.push(program);
const skip = missing.length
  ? `no container builder here: ${missing.join(' and ')} not installed (apt-get install mmdebstrap podman builds the image from Debian's packages)`
  : false;

t.test('the image builds from the Dockerfile on a Debian base made by mmdebstrap', { skip, timeout: 45 * 60_000 }, async (t) => {
  const tag = 'localhost/qcrash:test';
  const started = Date.now();
  const r = await execa(process.execPath, [script, '--tag', tag], { cwd: root, reject: false, all: true, timeout: 45 * 60_000 });
  t.equal(
    r.exitCode,
    0,
    r.exitCode === 0
      ? 'build-image exited 0'
      : `build-image exited ${r.exitCode}:\n${String(r.all).split('\n').slice(-30).join('\n')}`,
  );
  t.match(r.stdout, new RegExp(`built ${tag} on localhost/qcrash-base:bookworm-node`));
  // The Dockerfile's last RUN is `qcrash doctor`, which fails the build when a tool is
  // missing (podman reuses the layer when its inputs have not changed since it ran).
  t.match(String(r.all), /RUN node bin\/qcrash\.js doctor/);
  const config = JSON.parse((await execa('podman', ['image', 'inspect', '--format', '{{json .Config}}', tag])).stdout) as {
    Entrypoint?: string[];
    WorkingDir?: string;
    Env?: string[];
  };
  t.same(config.Entrypoint, ['node', 'bin/qcrash.js']);
  t.equal(config.WorkingDir, '/opt/qcrash');
  t.ok(config.Env?.includes('QCRASH_CACHE=/var/cache/qcrash'));
  t.comment(`image built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
});
