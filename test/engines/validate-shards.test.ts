import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mergeValidateShards, validateKernels, validateReport } from '../../harness/validate/validate.ts';
import { combineStepReports, type BisectStepReport } from '../../harness/bisect/bisect.ts';
import { ExitCode } from '../../harness/util/errors.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher, type FakeMachine } from '../helpers/fake-machine.ts';
import { qcrash } from '../helpers/cli.ts';
import { freeBlockInUse } from '../helpers/damage.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';

// validate --shard: each shard runs its part of the cases on both kernels
// and confirms the part's new signatures; merge joins the parts and judges
// the whole. Through the real runner, store and oracles, with scripted
// machines standing for the two kernels (as test/validate/validate.test.ts).
const tmp = await TempDir.create('validate-shards');
t.teardown(() => tmp.remove());
const fake = (id: string) => fakeKernel(id);
const baseline = fake('baseline');
const patched = fake('patched');
const scenario = await writeStepsScenario(join(tmp.path, 'judge.yaml'), { none: 'last' });

// Patched: after-sync always damaged (introduced), after-mount on its first
// two kills only (flaky over two reruns); baseline: after-drop-caches (removed).
function machines() {
  let patchedMountKills = 0;
  return new FakeLauncher((spec: MachineSpec) => ({
    onKill: (m: FakeMachine) => {
      const last = m.commands.at(-1);
      const damaged =
        spec.kernel.id === 'baseline'
          ? last === 'drop-caches'
          : last === 'sync' || (last === 'mount' && ++patchedMountKills <= 2);
      if (damaged) freeBlockInUse(m.spec.disk.path);
    },
  }));
}
const judgement = (r: Awaited<ReturnType<typeof validateKernels>>) => ({
  introduced: r.introduced.map((v) => [v.signature, v.confirmed, v.reruns, v.caseIds]),
  flaky: r.flaky.map((v) => [v.signature, v.confirmed, v.reruns, v.caseIds]),
  removed: r.removed,
  unchanged: r.unchanged,
});
const common = { baseline, patched, scenarios: [scenario], seed: 1, jobs: 1, confirmRuns: 2, snapshots: false };

const whole = await validateKernels({ ...common, out: join(tmp.path, 'whole'), machines: machines() });
const shared = machines();
const parts: Array<Awaited<ReturnType<typeof validateKernels>>> = [];
for (const index of [1, 2])
  parts.push(
    await validateKernels({ ...common, out: join(tmp.path, `part-${index}`), machines: shared, shard: { index, total: 2 } }),
  );

t.test('two validate shards merged judge as the unsharded validate', async (t) => {
  t.equal(whole.introduced.length, 1, 'the unsharded validate finds the introduced signature');
  t.equal(whole.flaky.length, 1);
  t.ok(
    parts.every((p) => p.shard && p.patched.summary.counts.total < whole.patched.summary.counts.total),
    'each shard ran a part',
  );
  t.match(validateReport(parts[0]!), /Result: shard 1\/2 only/, 'a shard has no verdict of its own');
  t.notMatch(validateReport(parts[0]!), /Tested-by/);
  const merged = await mergeValidateShards({ out: join(tmp.path, 'merged'), dirs: parts.map((p) => p.dir) });
  t.same(judgement(merged.result), judgement(whole), 'introduced, flaky, removed, unchanged: the same');
  t.equal(merged.exitCode, ExitCode.failed, 'exit 1: the patch introduced a finding');
  t.same(merged.problems, []);
  t.same(
    merged.result.patched.summary.cases.map((c) => [c.id, c.status]),
    whole.patched.summary.cases.map((c) => [c.id, c.status]),
    'the same cases and verdicts on the patched kernel',
  );
  const text = await readFile(join(tmp.path, 'merged', 'validate.txt'), 'utf8');
  t.match(text, /INTRODUCED by the patch \(confirmed on rerun\): 1/);
  t.match(await readFile(join(tmp.path, 'merged', 'validate.html'), 'utf8'), /REGRESSION/);
});

t.test('qcrash merge tells validate shards from run shards', async (t) => {
  const r = await qcrash(['merge', join(tmp.path, 'merged-cli'), ...parts.map((p) => p.dir)]);
  t.equal(r.code, ExitCode.failed, `exit 1 as validate's: ${r.stderr.slice(-500)}`);
  t.match(r.stdout, /INTRODUCED by the patch \(confirmed on rerun\): 1/);
  const mixed = await qcrash(['merge', join(tmp.path, 'mixed'), parts[0]!.dir, join(parts[1]!.dir, 'patched')]);
  t.equal(mixed.code, ExitCode.usage);
  t.match(mixed.stderr, /is not a validate shard/);
});

t.test('a missing validate shard leaves the result incomplete: no Tested-by, exit 3', async (t) => {
  // The shard without the after-sync cases alone: it introduces nothing, and the other half is missing.
  const clean = parts.find((p) => !p.patched.summary.cases.some((c) => c.pointLabel === 'after-sync'))!;
  t.ok(clean, 'one shard has no after-sync case');
  const other = parts.find((p) => p !== clean)!;
  const merged = await mergeValidateShards({ out: join(tmp.path, 'half'), dirs: [clean.dir] });
  t.same(
    merged.problems.map((p) => p.split(':')[0]),
    ['baseline', 'patched'],
    `baseline and patched each miss a shard: ${merged.problems.join('; ')}`,
  );
  t.same(
    merged.result.notJudged.patched,
    other.patched.summary.cases.map((c) => c.id).sort(),
    "the missing shard's cases are not judged",
  );
  t.same(merged.result.introduced, []);
  t.equal(merged.exitCode, ExitCode.infrastructure, 'exit 3, never 0 with a part missing');
  t.notMatch(validateReport(merged.result), /Tested-by/);
  t.match(validateReport(merged.result), /Result: INCOMPLETE/);
  t.match(await readFile(join(tmp.path, 'half', 'validate.html'), 'utf8'), /INCOMPLETE/);
  await t.rejects(mergeValidateShards({ out: join(tmp.path, 'twice'), dirs: [parts[0]!.dir, parts[0]!.dir] }), {
    message: /given twice/,
  });
});

t.test('bisect-combine: bad if any part is bad, good only if every part is good', async (t) => {
  const shard = (index: number, total = 3) => ({ index, total, caseListHash: 'c'.repeat(64), partitionHash: 'p'.repeat(64) });
  const r = (index: number, verdict: 'good' | 'bad' | 'skip', extra: Partial<BisectStepReport> = {}): BisectStepReport => ({
    qcrash: 'bisect-step',
    commit: 'a'.repeat(40),
    verdict,
    exitCode: verdict === 'good' ? 0 : verdict === 'bad' ? 1 : 125,
    reason: `${verdict} ${index}`,
    seconds: index,
    shard: shard(index),
    ...extra,
  });
  t.match(combineStepReports([r(1, 'good'), r(2, 'good'), r(3, 'good')]), { verdict: 'good', exitCode: 0 });
  t.match(combineStepReports([r(1, 'good'), r(2, 'bad', { flaky: true }), r(3, 'skip')]), {
    verdict: 'bad',
    exitCode: 1,
    flaky: true,
    reason: /shard 2\/3/,
  });
  t.match(
    combineStepReports([r(1, 'good'), r(3, 'good')]),
    { verdict: 'skip', exitCode: 125, reason: /shard\(s\) 2\/3 reported nothing/ },
    'a missing part is never good',
  );
  t.match(combineStepReports([r(1, 'good'), r(2, 'skip'), r(3, 'good')]), { verdict: 'skip', exitCode: 125 });
  t.throws(() => combineStepReports([r(1, 'good'), r(1, 'good'), r(2, 'good'), r(3, 'good')]), /reported twice/);
  t.throws(() => combineStepReports([r(1, 'good'), r(2, 'good', { commit: 'b'.repeat(40) })]), /different revisions/);
  t.throws(
    () => combineStepReports([r(1, 'good'), r(2, 'good', { shard: { ...shard(2), caseListHash: 'd'.repeat(64) } })]),
    /another case list or partition/,
  );
  t.throws(() => combineStepReports([]), /no bisect-step report/);
});
