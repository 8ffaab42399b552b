import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qcrash } from '../helpers/cli.ts';
import { qemuPids } from '../helpers/env.ts';

// The cache on another filesystem than the temp dirs, as the Dockerfile (a
// cache volume) and deploy/kubernetes (a claim) place it: each cache is a
// tmpfs mounted for the test (root only), the temp dirs stay on $TMPDIR's disk.
const root = await mkdtemp(join(tmpdir(), 'faults-fs-'));
const tmp = join(root, 'tmp');
await mkdir(tmp);
const mounted: string[] = [];
t.teardown(async () => {
  for (const m of mounted) execFileSync('umount', ['-l', m]);
  await rm(root, { recursive: true, force: true });
});

const canMount = process.getuid?.() === 0;

async function tmpfs(name: string, size: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  mounted.push(dir);
  return dir;
}

const scenario = join(root, 'one.yaml');
await writeFile(
  scenario,
  'recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n  - mount: [commit=1]\n  - migrate: /shapes/direct-12\n  - sync\nkill:\n  - after: sync\n',
);

t.test(
  'a cache on another filesystem than the temp dirs: the run builds, saves and passes',
  { skip: !canMount && 'needs root to mount a tmpfs' },
  async (t) => {
    const cache = await tmpfs('cache', '1g');
    const out = join(root, 'out');
    const r = await qcrash(['run', scenario, '--out', out], { env: { QCRASH_CACHE: cache, QCRASH_TMPDIR: tmp } });
    t.notMatch(r.stderr, /EXDEV/);
    t.equal(r.code, 0, r.stderr);
    t.ok(
      (await readdir(join(cache, 'images'))).some((d) => d.startsWith('small-4k-')),
      'the base image is in the cache',
    );
    t.same(
      (await readdir(join(cache, 'images'))).filter((d) => d.includes('.moving')),
      [],
      'no half-moved copy left',
    );
    t.same(
      (await readdir(tmp)).filter((d) => d.startsWith('qcrash-')),
      [],
      'no temp dir left',
    );
    t.same(qemuPids(tmp), []);
  },
);

t.test(
  'a cache that fills while the VM state is saved: ENOSPC with the path, not "Broken pipe"',
  { skip: !canMount && 'needs root to mount a tmpfs' },
  async (t) => {
    // Room for the base image (10 MB) and the initramfs (5 MB), not for the VM state (about 60 MB).
    const cache = await tmpfs('small-cache', '24m');
    const out = join(root, 'out-full');
    const r = await qcrash(['run', scenario, '--out', out], { env: { QCRASH_CACHE: cache, QCRASH_TMPDIR: tmp } });
    t.equal(r.code, 3, r.stderr);
    t.notMatch(r.stderr, /Broken pipe/);
    t.match(r.stderr, new RegExp(`ENOSPC[^\\n]*${join(cache, 'snapshots')}|${join(cache, 'snapshots')}[^\\n]*ENOSPC`));
    t.same(
      (await readdir(join(cache, 'snapshots'))).filter((f) => f.endsWith('.partial')),
      [],
      'the partial state is removed',
    );
    t.same(
      (await readdir(tmp)).filter((d) => d.startsWith('qcrash-')),
      [],
      'no temp dir left',
    );
    t.same(qemuPids(tmp), []);
  },
);
