import t from 'tap';
import { cp, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runSuite } from '../../harness/run/runner.ts';
import { mergeShards } from '../../harness/run/merge.ts';
import { exitCodeFor } from '../../harness/results/verdict.ts';
import { caseRelDir, loadSummary } from '../../harness/results/store.ts';
import { exportCrashImage } from '../../harness/results/crash-images.ts';
import { ConfigError, ExitCode } from '../../harness/util/errors.ts';
import type { RunMeta, RunSummary } from '../../harness/results/run.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher, type FakeMachine } from '../helpers/fake-machine.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';
import { freeBlockInUse } from '../helpers/damage.ts';

// Shards and merge through the real runner, store, oracles and reporters,
// with scripted machines in place of QEMU (the same on real VMs, in three
// processes: test/engines/shard-run.test.ts). The kill after `sync` damages
// the crash image (a real debugfs change the real e2fsck reports), so the
// merged run has a real failing case to keep.
const tmp = await TempDir.create('merge-test');
t.teardown(() => tmp.remove());
const kernel = fakeKernel('fake', 'fake-1');
const scenario = await writeStepsScenario(join(tmp.path, 'parts.yaml'), { none: 'first', repeat: 2 });
function damageAfterSync(m: FakeMachine): void {
  if (m.commands.at(-1) === 'sync') freeBlockInUse(m.spec.disk.path);
}
const machines = new FakeLauncher((_spec: MachineSpec) => ({ onKill: damageAfterSync }));

let n = 0;
async function run(
  extra: { shard?: { index: number; total: number }; seed?: number; out?: string; durationsFrom?: string } = {},
) {
  return runSuite({
    inputs: [scenario],
    kernel,
    seed: extra.seed ?? 5,
    jobs: 1,
    machines,
    snapshots: false,
    keep: 'failed',
    out: extra.out ?? join(tmp.path, `run-${++n}`),
    ...(extra.shard ? { shard: extra.shard } : {}),
    ...(extra.durationsFrom ? { durationsFrom: extra.durationsFrom } : {}),
  });
}
async function shards(total: number, seed = 5) {
  const out: string[] = [];
  for (let i = 1; i <= total; i++) out.push((await run({ shard: { index: i, total }, seed })).dir);
  return out;
}
const statuses = (s: RunSummary) => Object.fromEntries(s.cases.map((c) => [c.id, c.status]));

const whole = (await run()).summary;
const three = await shards(3);

t.test('three shards merge into the run the unsharded one is', async (t) => {
  t.equal(whole.counts.total, 8);
  const parts = await Promise.all(three.map(loadSummary));
  t.same(
    parts.map((p) => p.shard!.index),
    [1, 2, 3],
  );
  t.ok(
    parts.every((p) => p.counts.total > 0 && p.counts.total < 8),
    `every shard ran part of the cases: ${parts.map((p) => p.counts.total).join(', ')}`,
  );
  t.equal(new Set(parts.map((p) => p.shard!.runKey)).size, 1, 'every shard names the same run');
  t.equal(new Set(parts.map((p) => p.runId)).size, 3, 'each shard is a run of its own');
  const r = await mergeShards({ out: join(tmp.path, 'merged-3'), dirs: three });
  t.same(r.problems, []);
  t.same(
    r.summary.cases.map((c) => c.id),
    whole.cases.map((c) => c.id),
    'the same case set',
  );
  t.same(statuses(r.summary), statuses(whole), 'the same verdicts');
  t.same(r.summary.counts, whole.counts);
  t.equal(exitCodeFor(r.summary), ExitCode.failed, 'exit 1, as the unsharded run: the after-sync cases fail');
  t.equal(exitCodeFor(whole), ExitCode.failed);
  t.equal(r.summary.merged!.shards.length, 3);
  t.match(r.summary.runId, /-merged-[0-9a-f]{12}$/);
  t.notOk(r.summary.shard, 'the merged run is not a shard');
  for (const f of ['run.json', 'summary.json', 'results.tap', 'results.ktap', 'junit.xml', 'report.txt', 'report.html']) {
    t.ok(
      await readFile(join(r.dir, f)).then(
        () => true,
        () => false,
      ),
      `${f} written`,
    );
  }
  const failing = r.summary.cases.find((c) => c.status === 'fail')!;
  t.ok(
    await readFile(join(r.dir, caseRelDir(failing.id), 'crash.qcow2')).then(
      () => true,
      () => false,
    ),
    'a failing case keeps its crash image in the merged folder',
  );
  // The kept image holds only what the crash changed, over the run's compressed base in images/: merge carries it.
  const exported = join(tmp.path, 'exported.img');
  await exportCrashImage(join(r.dir, caseRelDir(failing.id)), exported);
  t.ok((await stat(exported)).size > 0, 'and it exports to a raw image from the merged folder alone');
  const html = await readFile(join(r.dir, 'report.html'), 'utf8');
  t.match(html, `${caseRelDir(failing.id)}/case.json`, "the HTML report links the merged folder's artefacts");
  t.match(html, '3 of 3 merged', 'and says the run was merged from its shards');
  t.match(await readFile(join(r.dir, 'report.txt'), 'utf8'), /shards: +3 of 3 merged/);
  const again = await mergeShards({ out: join(tmp.path, 'merged-3-again'), dirs: [...three].reverse() });
  t.equal(again.summary.runId, r.summary.runId, 'merging the same shards again gives the same run id, in any order');
  await t.rejects(mergeShards({ out: join(tmp.path, 'merged-3'), dirs: three }), /already holds a run/);
});

t.test('a missing shard makes its cases errors, never passes', async (t) => {
  const r = await mergeShards({ out: join(tmp.path, 'merged-missing'), dirs: [three[0]!, three[2]!] });
  const lost = (await loadSummary(three[1]!)).cases.map((c) => c.id).sort();
  t.same(
    r.summary.cases.map((c) => c.id),
    whole.cases.map((c) => c.id),
    'every case of the run is listed',
  );
  t.same(
    r.summary.cases
      .filter((c) => c.status === 'error')
      .map((c) => c.id)
      .sort(),
    lost,
    "the missing shard's cases are errors",
  );
  t.ok(
    r.summary.cases
      .filter((c) => c.status === 'error')
      .every((c) => c.errorKind === 'MissingShard' && /shard 2\/3 was not merged/.test(c.error!)),
  );
  t.match(r.problems, [/shard 2\/3 was not given/]);
  t.same(r.summary.merged!.missing, [2]);
  t.match(await readFile(join(r.dir, 'report.txt'), 'utf8'), /MISSING: 2\/3/);
  t.not(exitCodeFor(r.summary), ExitCode.pass);
  const junit = await readFile(join(r.dir, 'junit.xml'), 'utf8');
  t.match(junit, /shard 2\/3 was not merged/, 'JUnit says why');
});

t.test('a duplicated shard, shards of another run or partition are refused', async (t) => {
  await t.rejects(mergeShards({ out: join(tmp.path, 'dup'), dirs: [...three, three[1]!] }), {
    message: /shard 2\/3 was given twice/,
  });
  const copy = join(tmp.path, 'copy-of-2');
  await cp(three[1]!, copy, { recursive: true });
  await t.rejects(mergeShards({ out: join(tmp.path, 'dup2'), dirs: [...three, copy] }), {
    message: /shard 2\/3 was given twice/,
  });
  const otherSeed = (await run({ shard: { index: 2, total: 3 }, seed: 6 })).dir;
  const e = await mergeShards({ out: join(tmp.path, 'seeds'), dirs: [three[0]!, otherSeed, three[2]!] }).catch((x: Error) => x);
  t.type(e, ConfigError);
  t.match((e as Error).message, /different seeds: 5 .* vs 6 /);
  const halves = (await run({ shard: { index: 2, total: 2 } })).dir;
  await t.rejects(mergeShards({ out: join(tmp.path, 'totals'), dirs: [three[0]!, halves] }), {
    message: /different numbers of parts/,
  });
  await t.rejects(mergeShards({ out: join(tmp.path, 'plain'), dirs: [join(tmp.path, 'run-1')] }), {
    message: /made without --shard/,
  });
  for (const d of ['dup', 'dup2', 'seeds', 'totals', 'plain'])
    t.notOk(
      await readFile(join(tmp.path, d, 'run.json')).then(
        () => true,
        () => false,
      ),
      `${d}: nothing written`,
    );
});

t.test('a case missing from a shard, or present in two, is an error', async (t) => {
  const dirs = await Promise.all(
    three.map(async (d, i) => {
      const c = join(tmp.path, `edited-${i + 1}`);
      await cp(d, c, { recursive: true });
      return c;
    }),
  );
  const s1 = await loadSummary(dirs[0]!);
  const s2 = await loadSummary(dirs[1]!);
  const gone = s1.cases[0]!.id;
  await rm(join(dirs[0]!, caseRelDir(gone), 'case.json'));
  // A result of shard 2's case inside shard 3's folder: two results for one case.
  const twice = s2.cases[0]!.id;
  await cp(join(dirs[1]!, caseRelDir(twice)), join(dirs[2]!, caseRelDir(twice)), { recursive: true });
  const r = await mergeShards({ out: join(tmp.path, 'merged-edited'), dirs });
  const byId = new Map(r.summary.cases.map((c) => [c.id, c]));
  t.equal(byId.get(gone)!.status, 'error');
  t.equal(byId.get(gone)!.errorKind, 'MissingCase');
  t.match(byId.get(gone)!.error, /did not finish; finish it with qcrash run --resume/);
  t.equal(byId.get(twice)!.status, 'error');
  t.equal(byId.get(twice)!.errorKind, 'DuplicatedCase');
  t.equal(r.summary.counts.total, whole.counts.total, 'still one entry per case');
  t.equal(r.problems.length, 2);
  t.not(exitCodeFor(r.summary), ExitCode.pass);
});

t.test('more shards than cases: the empty shards succeed, say so, and merge', async (t) => {
  const ten = await shards(10);
  const parts = await Promise.all(
    ten.map(async (d) => JSON.parse(await readFile(join(d, 'summary.json'), 'utf8')) as RunSummary),
  );
  const empty = parts.filter((p) => p.counts.total === 0);
  t.equal(empty.length, 2, '8 cases over 10 shards leave two empty');
  for (const p of empty) {
    t.equal(exitCodeFor(p), ExitCode.pass, 'an empty shard exits 0: it did all it was given');
    t.equal(p.shard!.assignment[p.shard!.index - 1]!.length, 0, 'and its record says it was given nothing');
    const dir = ten[p.shard!.index - 1]!;
    t.match(await readFile(join(dir, 'report.html'), 'utf8'), /EMPTY SHARD/, 'its page does not call it a pass');
    t.match(await readFile(join(dir, 'report.txt'), 'utf8'), /Result: nothing to run in this shard/);
  }
  t.equal(
    exitCodeFor({ ...empty[0]!, shard: undefined } as unknown as RunSummary),
    ExitCode.infrastructure,
    'a run without a case that is not a shard is never 0',
  );
  const r = await mergeShards({ out: join(tmp.path, 'merged-10'), dirs: ten });
  t.same(statuses(r.summary), statuses(whole));
  t.same(r.problems, []);
  const without = await mergeShards({
    out: join(tmp.path, 'merged-10-without-empty'),
    dirs: ten.filter((_, i) => parts[i]!.counts.total > 0),
  });
  t.same(without.problems, [], 'an empty shard not given loses nothing');
  t.equal(without.warnings.filter((w) => /had no case/.test(w)).length, 2, 'but it is said');
});

t.test('a resumed shard keeps the part its run.json recorded', async (t) => {
  const out = join(tmp.path, 'resume-2');
  await run({ shard: { index: 2, total: 3 }, out });
  const meta = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')) as RunMeta;
  const first = (await loadSummary(out)).cases.map((c) => c.id);
  await rm(join(out, caseRelDir(first[0]!), 'case.json'));
  const r = await runSuite({ inputs: [], kernel, jobs: 1, machines, resume: out });
  t.same(
    r.summary.cases.map((c) => c.id),
    first,
    'the same part',
  );
  t.same(r.summary.shard, meta.shard, 'the same shard record');
});

t.test('--durations balances by an earlier run; shards must all be given the same', async (t) => {
  const balanced = await run({ shard: { index: 1, total: 3 }, durationsFrom: join(tmp.path, 'run-1') });
  t.equal(balanced.summary.shard!.costs, 'recorded');
  t.equal(balanced.summary.config!.durationsFrom!.runId, whole.runId, 'run.json names the run the durations came from');
  t.not(
    balanced.summary.shard!.partitionHash,
    (await loadSummary(three[0]!)).shard!.partitionHash,
    'measured costs are another partition',
  );
  await t.rejects(mergeShards({ out: join(tmp.path, 'mixed-costs'), dirs: [balanced.dir, three[1]!, three[2]!] }), {
    message: /partitioned differently .*give every shard the same --durations run/,
  });
  await t.rejects(run({ durationsFrom: join(tmp.path, 'run-1') }), { message: /give it together with --shard/ });
});
