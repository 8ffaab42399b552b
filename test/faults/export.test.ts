import t from 'tap';
import { mkdtemp, mkdir, readdir, rm, stat, writeFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qcrash } from '../helpers/cli.ts';

// `qcrash image export --out` replaces an existing file only with --force,
// and never a file the run depends on (its compressed base image, a kept
// crash image), whatever name it is given by.
const root = await mkdtemp(join(tmpdir(), 'faults-export-'));
const tmp = join(root, 'tmp');
await mkdir(tmp);
t.teardown(() => rm(root, { recursive: true, force: true }));
const env = { QCRASH_TMPDIR: tmp };

const scenario = join(root, 'one.yaml');
await writeFile(
  scenario,
  'recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n  - mount: [commit=1]\n  - migrate: /shapes/direct-12\n  - sync\nkill:\n  - after: sync\n',
);
const out = join(root, 'run');
const r = await qcrash(['run', scenario, '--out', out, '--keep', 'all'], { env });
t.equal(r.code, 0, r.stderr);
const caseDir = join(out, 'cases', 'one', 'after-sync', 'r1');
const [base] = await readdir(join(out, 'images'));
const stored = join(out, 'images', base!);
const exp = (...args: string[]) => qcrash(['image', 'export', caseDir, ...args], { env });
const fingerprint = async (f: string) => {
  const s = await stat(f);
  return `${s.size}/${s.mtimeMs}/${s.ino}`;
};

t.test('an existing --out is replaced only with --force', async (t) => {
  const file = join(root, 'exported.img');
  await writeFile(file, 'mine\n');
  const refused = await exp('--out', file);
  t.equal(refused.code, 2, refused.stderr);
  t.match(refused.stderr, /exists: give --force/);
  t.equal((await stat(file)).size, 5, 'left as it was');
  const forced = await exp('--out', file, '--force');
  t.equal(forced.code, 0, forced.stderr);
  t.ok((await stat(file)).size > 1 << 20, 'now the raw crash image');
});

t.test("the run's base image and kept image are never overwritten, not even with --force or through a link", async (t) => {
  const link = join(root, 'innocent.img');
  await symlink(stored, link);
  for (const target of [stored, join(caseDir, 'crash.qcow2'), link]) {
    const before = await fingerprint(target);
    const e = await exp('--out', target, '--force');
    t.equal(e.code, 2, `${target}: ${e.stderr}`);
    t.match(e.stderr, /which the run's kept crash images depend on/);
    t.equal(await fingerprint(target), before, `${target} untouched`);
  }
  const still = await exp('--out', join(root, 'again.img'));
  t.equal(still.code, 0, `the kept image still exports: ${still.stderr}`);
});
