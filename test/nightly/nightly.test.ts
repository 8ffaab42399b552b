import t from 'tap';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { git, tarballSource } from '../../harness/kernel/source.ts';
import { cacheDir, projectRoot, scenariosDir } from '../../harness/util/paths.ts';
import { loadHistory } from '../../harness/results/history.ts';
import { qemuPids } from '../helpers/env.ts';

// Issue 17's acceptance for `qcrash nightly`: a small history on the 6.1
// source (a harmless commit, then mutant 03 from ../shared/mutants on top),
// followed for three nights by the cron script (scripts/nightly.mjs fetches
// the branch from an "upstream" repository, qcrash nightly builds the head
// and runs scenarios/validate/durability.yaml): nothing on the first night,
// the mutant's finding reported on the second (it reproduces on the rerun),
// nothing new on the third, unchanged night. The history is made with git
// plumbing on clones without a work tree (as test/kernel/bisect.test.ts);
// its commits have fixed dates, so they are the same commits on every run
// of this test, and the trees live in the cache (kernel-work/nightly-test-*)
// so that qcrash's build clone of them, and the kernels built there, are
// reused: a cold cache builds twice (about 4 minutes with ccache, then 40 s),
// a warm one not at all.
const mutant = new URL('../../../shared/mutants/03-no-mark-dirty-after-swap.patch', import.meta.url).pathname;
const dir = await mkdtemp(join(tmpdir(), 'nightly-test-'));
const tmp = join(dir, 'tmp');
await mkdir(tmp);
const upstream = cacheDir('kernel-work', 'nightly-test-upstream');
const tree = cacheDir('kernel-work', 'nightly-test-tree');
t.teardown(() => rm(dir, { recursive: true, force: true }));

const date = '2026-03-01T02:00:00Z';
const env = {
  GIT_INDEX_FILE: join(dir, 'index'),
  GIT_AUTHOR_NAME: 'Dev',
  GIT_AUTHOR_EMAIL: 'dev@example.org',
  GIT_COMMITTER_NAME: 'Dev',
  GIT_COMMITTER_EMAIL: 'dev@example.org',
  GIT_AUTHOR_DATE: date,
  GIT_COMMITTER_DATE: date,
};
const g = async (args: string[], input?: string) =>
  (await execa('git', args, { cwd: upstream, env, ...(input === undefined ? {} : { input }) })).stdout.trim();

async function commit(parent: string, subject: string): Promise<string> {
  const treeId = await g(['write-tree']);
  const sha = await g(['commit-tree', treeId, '-p', parent, '-m', subject]);
  await g(['update-ref', 'refs/heads/main', sha]);
  return sha;
}

async function night(): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await execa(
    process.execPath,
    [
      join(projectRoot, 'scripts', 'nightly.mjs'),
      '--tree',
      tree,
      '--remote',
      upstream,
      '--branch',
      'main',
      '--history',
      join(dir, 'history'),
      '--',
      join(scenariosDir, 'validate', 'durability.yaml'),
      '--jobs',
      '1',
    ],
    { reject: false, env: { ...process.env, QCRASH_TMPDIR: tmp }, stdin: 'ignore' },
  );
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** The signature lines under a section title of the nightly report. */
function section(stdout: string, title: string): string[] {
  const m = new RegExp(`^${title.replace(/[()]/g, '\\$&')}: (\\d+)\\n((?:  .*\\n)*)`, 'm').exec(stdout);
  if (!m) throw new Error(`no section "${title}" in:\n${stdout}`);
  return m[2]!
    .split('\n')
    .filter(Boolean)
    .map((l) => l.trim().split('  [')[0]!);
}

t.test('three nights of one branch: nothing, the mutant reported once, nothing new', { timeout: 2400_000 }, async (t) => {
  const src = await tarballSource();
  for (const d of [upstream, tree]) await rm(d, { recursive: true, force: true });
  await git(cacheDir('kernel-work'), ['clone', '-q', '--shared', '--no-checkout', src.work, upstream]);
  await g(['read-tree', src.base]);
  const migrate = 'fs/ext4/migrate.c';
  const original = (await g(['show', `${src.base}:${migrate}`])) + '\n';
  const blob = await g(
    ['hash-object', '-w', '--stdin'],
    original.replace(
      '// SPDX-License-Identifier: LGPL-2.1\n',
      '// SPDX-License-Identifier: LGPL-2.1\n/* nightly test: a comment */\n',
    ),
  );
  await g(['update-index', '--cacheinfo', `100644,${blob},${migrate}`]);
  const harmless = await commit(src.base, 'ext4: comment the migration code');
  // The tree qcrash is pointed at: a clone of its own that the cron script fetches into.
  await git(cacheDir('kernel-work'), ['clone', '-q', '--shared', '--no-checkout', upstream, tree]);

  const first = await night();
  t.equal(first.code, 0, `night 1: ${first.stderr.slice(-1500)}`);
  t.match(first.stdout, /first night of this branch in the history/);
  t.same(section(first.stdout, 'NEW since last night (reproduced on rerun)'), []);

  await g(['apply', '--cached', mutant]);
  const planted = await commit(harmless, 'ext4: migrate: skip marking the inode dirty after the swap');
  const second = await night();
  t.equal(second.code, 1, `night 2 fails: ${second.stderr.slice(-1500)}`);
  t.match(second.stderr, new RegExp(`main is at ${planted}`), 'the script fetched the new head');
  const fresh = section(second.stdout, 'NEW since last night (reproduced on rerun)');
  t.ok(fresh.length > 0, `the mutant's findings are new: ${fresh.join('; ')}`);
  t.ok(
    fresh.every((s) => s.startsWith('validate/durability | ') && s.includes('not-durable')),
    'and they are the lost durability of mutant 03',
  );
  t.match(second.stdout, /rerun 1\/1/, 'each came back on its rerun');
  t.same(section(second.stdout, 'flaky (new since last night, not seen on every rerun)'), []);

  const third = await night();
  t.equal(third.code, 0, `night 3 (unchanged): ${third.stderr.slice(-1500)}`);
  t.match(third.stdout, /\(the same revision\)/);
  t.same(section(third.stdout, 'NEW since last night (reproduced on rerun)'), [], 'nothing new on an unchanged night');
  t.same(
    section(third.stdout, 'still failing (as last night)'),
    [...fresh].sort(),
    'the finding is still there, not reported again',
  );

  const index = await loadHistory(join(dir, 'history', 'history.json'));
  t.same(
    index.runs.map((r) => [r.branch, r.revision]),
    [
      ['qcrash-nightly/main', harmless],
      ['qcrash-nightly/main', planted],
      ['qcrash-nightly/main', planted],
    ],
    'the history keeps the three nights of the branch',
  );
  t.ok(
    await readFile(join(dir, 'history', 'history.html')).then(
      () => true,
      () => false,
    ),
    'and its page',
  );
  t.same(qemuPids(tmp), [], 'no QEMU left');
});
