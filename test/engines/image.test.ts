import t, { type Test } from 'tap';
import { readFile, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { execa } from 'execa';
import { TempDir } from '../../harness/util/tempdir.ts';

// The container image from the Dockerfile, built from Debian's packages by
// scripts/build-image.mjs (npm run image:build): mmdebstrap makes the Debian 12
// base, podman imports it and builds the Dockerfile on it. Everywhere: the
// script's message when mmdebstrap or podman is missing, and the commands it
// runs, given recording stand-ins for mmdebstrap, podman and unshare. The real
// build (about 5 minutes cold, 3 GB) only with QCRASH_IMAGE_BUILD=1.

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

/** Each stand-in appends its name and arguments (NUL-separated, one call a line) to $QCRASH_FAKE_LOG. */
const record = 'printf \'%s\\0\' "$(basename "$0")" "$@" >> "$QCRASH_FAKE_LOG"; printf \'\\n\' >> "$QCRASH_FAKE_LOG"';
const fakes: Record<string, string> = {
  // Writes the tarball it is asked for, and the mount namespace it ran in.
  mmdebstrap: `${record}\nreadlink /proc/self/ns/mnt > "$QCRASH_FAKE_LOG.mntns"\nfor a; do case "$a" in *.tar) : > "$a" ;; esac; done\n`,
  // The real unshare when there is one: the namespace mmdebstrap gets is real.
  unshare: `${record}\nif [ -n "$QCRASH_REAL_UNSHARE" ]; then exec "$QCRASH_REAL_UNSHARE" "$@"; fi\nwhile [ "$1" != mmdebstrap ]; do shift; done\nexec "$@"\n`,
  podman: `${record}\ncase "$1 $2" in\n  'image exists') exit 1 ;;\n  'image inspect') echo 3145728 ;;\nesac\n`,
};

async function runWithFakes(t: Test, args: string[]) {
  const bin = await TempDir.create('image-fakes');
  const cache = await TempDir.create('image-cache');
  t.teardown(() => Promise.all([bin.remove(), cache.remove()]));
  for (const [name, body] of Object.entries(fakes)) await writeFile(bin.join(name), `#!/bin/sh\n${body}`, { mode: 0o755 });
  const realUnshare = (await execa('sh', ['-c', 'command -v unshare'], { reject: false })).stdout.trim();
  const log = bin.join('calls');
  const r = await execa(process.execPath, [script, ...args], {
    cwd: root,
    env: {
      ...process.env,
      PATH: `${bin.path}:${process.env.PATH}`,
      QCRASH_CACHE: cache.path,
      QCRASH_FAKE_LOG: log,
      QCRASH_REAL_UNSHARE: realUnshare,
    },
    reject: false,
    timeout: 60_000,
  });
  const calls = (await readFile(log, 'utf8').catch(() => ''))
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split('\0').slice(0, -1));
  const mntns = (await readFile(`${log}.mntns`, 'utf8').catch(() => '')).trim();
  return { r, calls, mntns, cache: cache.path, realUnshare };
}

t.test(
  'as root, mmdebstrap runs in a mount namespace of its own; its base is imported and the Dockerfile built on it',
  async (t) => {
    const { r, calls, mntns, cache, realUnshare } = await runWithFakes(t, ['--tag', 'localhost/qcrash:fake']);
    t.equal(r.exitCode, 0, r.exitCode === 0 ? 'exit 0' : r.stderr);
    const asRoot = process.getuid?.() === 0;
    const names = calls.map((c) => (c[0] !== 'podman' ? c[0] : c[1] === 'image' ? `podman image ${c[2]}` : `podman ${c[1]}`));
    t.same(names, [
      ...(asRoot ? ['unshare'] : []),
      'mmdebstrap',
      'podman image exists',
      'podman import',
      'podman build',
      'podman image inspect',
    ]);
    const mm = calls.find((c) => c[0] === 'mmdebstrap')!.slice(1);
    if (asRoot) {
      // Its /proc, /sys and /dev mounts are then out of reach of a `grep -r /tmp` elsewhere,
      // whose presence made root mode's umount fail ("target is busy") and leave them mounted.
      t.same(calls[0]!.slice(1, 5), ['--mount', '--propagation', 'private', 'mmdebstrap']);
      if (realUnshare) t.not(mntns, await readlink('/proc/self/ns/mnt'), 'mmdebstrap saw another mount namespace');
    }
    t.notOk(
      mm.some((a) => a.startsWith('--mode')),
      "mmdebstrap's own choice of mode",
    );
    t.ok(mm.includes('--include=bash,ca-certificates') && mm.includes('--format=tar'));
    t.ok(mm.includes(`--customize-hook=copy-in ${process.execPath} /usr/local/bin`), 'this Node.js copied in');
    const target = mm[mm.length - 1]!;
    t.equal(mm[mm.length - 2], 'bookworm');
    t.match(target, new RegExp(`^${cache}/image/partial-\\d+-debian-bookworm-node`));
    const tar = join(cache, 'image', target.slice(target.indexOf('debian-')));
    t.same(await readdir(join(cache, 'image')), [tar.slice(tar.lastIndexOf('/') + 1)], 'the partial tarball renamed into place');
    const imported = calls.find((c) => c[1] === 'import')!;
    const base = imported[imported.length - 1]!;
    t.equal(imported[imported.length - 2], tar);
    t.match(base, /^localhost\/qcrash-base:bookworm-node[\d.]+-[0-9a-f]{12}$/);
    const build = calls.find((c) => c[1] === 'build')!.slice(2);
    t.ok(build.includes('--isolation=chroot'), 'chroot isolation: no OCI runtime in the build');
    t.same(build.slice(build.indexOf('--build-arg'), build.indexOf('--build-arg') + 2), ['--build-arg', `BASE=${base}`]);
    t.same(build.slice(-3), ['--file', join(root, 'Dockerfile'), root.replace(/\/$/, '')]);
    t.equal(r.stdout, `build-image: built localhost/qcrash:fake on ${base} (3 MiB)`);
  },
);

t.test('--mode goes to mmdebstrap as it is, with no namespace around it', async (t) => {
  const { r, calls } = await runWithFakes(t, ['--mode=unshare']);
  t.equal(r.exitCode, 0, r.exitCode === 0 ? 'exit 0' : r.stderr);
  t.notOk(
    calls.some((c) => c[0] === 'unshare'),
    'no unshare',
  );
  t.ok(calls.find((c) => c[0] === 'mmdebstrap')?.includes('--mode=unshare'));
});

const missing = [];
for (const program of ['mmdebstrap', 'podman']) if (!(await onPath(program))) missing.push(program);
// The real build takes minutes and 3 GB, too much for every `npm test`: ask for it.
const skip =
  process.env.QCRASH_IMAGE_BUILD !== '1'
    ? 'the real image build runs with QCRASH_IMAGE_BUILD=1 (about 5 minutes cold, 3 GB in podman storage)'
    : missing.length
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
