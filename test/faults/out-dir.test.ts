import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, readdir, rm, symlink, writeFile, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkOutDir } from '../../harness/run/out-dir.ts';
import { qcrash } from '../helpers/cli.ts';

// The results folder's checks name the real cause with the path, and never
// write through a link planted in a shared folder.
const root = await mkdtemp(join(tmpdir(), 'faults-out-'));
const mounted: string[] = [];
t.teardown(async () => {
  for (const m of mounted) execFileSync('umount', ['-l', m]);
  await rm(root, { recursive: true, force: true });
});

t.test(
  '--out on a read-only filesystem is exit 2 naming EROFS and the path, not ENOENT',
  { skip: process.getuid?.() !== 0 && 'needs root to mount a tmpfs' },
  async (t) => {
    const ro = join(root, 'ro');
    await mkdir(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', ro]);
    mounted.push(ro);
    const scenario = join(root, 's.yaml');
    await writeFile(scenario, 'recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n  - mount\n  - sync\nkill:\n  - after: sync\n');
    const out = join(ro, 'results', 'run1');
    const r = await qcrash(['run', scenario, '--out', out], { env: { QCRASH_TMPDIR: root } });
    t.equal(r.code, 2, r.stderr);
    t.notMatch(r.stderr, /ENOENT/);
    t.match(r.stderr, `EROFS: read-only file system, mkdir '${join(ro, 'results')}'`);
  },
);

t.test('the writability probe never follows a planted symlink', async (t) => {
  const shared = join(root, 'shared');
  await mkdir(shared);
  const victim = join(root, 'victim');
  await writeFile(victim, 'precious\n');
  // The name the probe had (pid-named), and links under every pid nearby.
  for (const pid of [process.pid, ...Array.from({ length: 8 }, (_, i) => process.pid + i + 1)]) {
    await symlink(victim, join(shared, `.qcrash-probe-${pid}`));
  }
  await checkOutDir(shared);
  t.equal(await readFile(victim, 'utf8'), 'precious\n', 'the link target is untouched');
  t.ok((await lstat(join(shared, `.qcrash-probe-${process.pid}`))).isSymbolicLink(), 'the planted link itself is left alone');
  t.same(
    (await readdir(shared)).filter((f) => !(f.startsWith('.qcrash-probe-') && f.split('-').length === 3)),
    [],
    'no probe file left',
  );
});
