import t from 'tap';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qcrash } from '../helpers/cli.ts';
import { qemuPids } from '../helpers/env.ts';
import type { RunSummary } from '../../harness/results/run.ts';

// Issue 17's acceptance on real VMs: one suite (stock kernel, small-4k,
// e2fsck recovery, kill points that always fire) run whole, then as three
// shards in three processes at once (--jobs 1 each, as three CI machines
// would), merged with `qcrash merge`: the same cases, the same verdicts; a
// shard left out or given twice is an error. The command lines are the ones
// the engine files use (.github/workflows/qcrash.yml, .gitlab-ci.yml,
// deploy/kubernetes/).
const dir = await mkdtemp(join(tmpdir(), 'shard-run-'));
const tmp = join(dir, 'tmp');
await mkdir(tmp);
t.teardown(() => rm(dir, { recursive: true, force: true }));
const env = { QCRASH_TMPDIR: tmp };
const scenario = join(dir, 'sharded.yaml');
await writeFile(
  scenario,
  `description: Every kill point fires; run whole and as shards.
recipe: small-4k
recovery: [e2fsck]
steps:
  - mount
  - migrate: /shapes/ind-13
  - sync
  - umount
kill:
  - none
  - before: migrate
  - after: migrate
  - after: sync
repeat: 2
`,
);
const runArgs = (extra: string[]) => [
  'run',
  scenario,
  '--kernel',
  'stock',
  '--seed',
  '7',
  '--keep',
  'failed',
  '--jobs',
  '1',
  '--format',
  'none',
  ...extra,
];
const summary = async (d: string) => JSON.parse(await readFile(join(d, 'summary.json'), 'utf8')) as RunSummary;
const verdicts = (s: RunSummary) => s.cases.map((c) => [c.id, c.status]);

t.test('three shards in three processes merge into the unsharded run', { timeout: 1800_000 }, async (t) => {
  const whole = join(dir, 'whole');
  const w = await qcrash(runArgs(['--out', whole]), { env, timeoutMs: 900_000 });
  t.equal(w.code, 0, `the unsharded run passes: ${w.stderr.slice(-800)}`);
  const wholeSummary = await summary(whole);
  t.equal(wholeSummary.counts.total, 8);

  const shards = [1, 2, 3].map((i) => join(dir, `shard-${i}`));
  const runs = await Promise.all(
    shards.map((out, i) => qcrash(runArgs(['--shard', `${i + 1}/3`, '--out', out]), { env, timeoutMs: 900_000 })),
  );
  runs.forEach((r, i) => t.equal(r.code, 0, `shard ${i + 1}/3 exits 0: ${r.stderr.slice(-600)}`));
  const parts = await Promise.all(shards.map(summary));
  t.same(
    parts.map((p) => p.counts.total).reduce((a, b) => a + b, 0),
    8,
    `the parts hold every case once: ${parts.map((p) => p.counts.total).join(' + ')}`,
  );
  t.ok(
    parts.every((p) => p.counts.total > 0),
    'every shard ran some',
  );
  t.equal(new Set(parts.map((p) => p.shard!.caseListHash)).size, 1, 'every shard records the same case list');

  const merged = join(dir, 'merged');
  const m = await qcrash(['merge', merged, ...shards], { env });
  t.equal(m.code, 0, `merge exits as the run would: ${m.stderr.slice(-600)}`);
  t.match(m.stderr, /merged 3 of 3 shard\(s\), 8 case\(s\)/);
  t.match(m.stdout, /shards: +3 of 3 merged/, 'the text report on stdout says where the run came from');
  t.match(m.stdout, /cases: +8 total, 8 passed/);
  const mergedSummary = await summary(merged);
  t.same(
    mergedSummary.cases.map((c) => c.id),
    wholeSummary.cases.map((c) => c.id),
    "the merged case set is the unsharded run's",
  );
  t.same(verdicts(mergedSummary), verdicts(wholeSummary), 'and so are the verdicts');
  for (const f of ['junit.xml', 'results.tap', 'results.ktap', 'report.txt', 'report.html'])
    t.ok((await readdir(merged)).includes(f), `${f} in the merged run`);

  const missing = await qcrash(['merge', join(dir, 'merged-missing'), shards[0]!, shards[2]!], { env });
  t.equal(missing.code, 3, 'a missing shard: exit 3, never 0');
  t.match(missing.stderr, /shard 2\/3 was not given: its \d+ case\(s\) are errors/);
  const missingSummary = await summary(join(dir, 'merged-missing'));
  t.same(
    missingSummary.cases.filter((c) => c.status === 'error').map((c) => c.id),
    parts[1]!.cases.map((c) => c.id),
    'its cases are errors in the merged run',
  );

  const twice = await qcrash(['merge', join(dir, 'merged-twice'), ...shards, shards[1]!], { env });
  t.equal(twice.code, 2, 'a duplicated shard: exit 2, nothing merged');
  t.match(twice.stderr, /shard 2\/3 was given twice/);
  t.same(qemuPids(tmp), [], 'no QEMU left');
});

t.test('a shard the partition leaves empty exits 0 and says so', async (t) => {
  const out = join(dir, 'shard-9');
  const r = await qcrash(runArgs(['--shard', '9/9', '--out', out]), { env });
  t.equal(r.code, 0, r.stderr.slice(-600));
  t.match(r.stderr, /shard 9\/9 has no case: the partition gave all 8 case\(s\) to the other shards/);
  const s = await summary(out);
  t.equal(s.counts.total, 0);
  t.same(s.shard!.assignment[8], []);
  t.same(qemuPids(tmp), [], 'it started no VM');
});
