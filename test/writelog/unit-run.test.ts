import t from 'tap';
import { access, cp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { MachinePool } from '../../harness/vm/machine/pool.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { runSuite } from '../../harness/run/runner.ts';
import { prepareLogUnit, runLogUnit } from '../../harness/run/log-unit.ts';
import { parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandLogUnits } from '../../harness/scenario/expand.ts';
import { caseRelDir } from '../../harness/results/store.ts';
import { CrashImageStore, exportCrashImage, keptImageName } from '../../harness/results/crash-images.ts';
import { sha256File } from '../../harness/util/hash.ts';
import { textReport } from '../../harness/report/text.ts';
import { formatSignature, signatureOf } from '../../harness/results/signature.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import type { LogStateFired } from '../../harness/crash/crash-state.ts';
import { WriteLog } from '../../harness/crash/writelog/format.ts';
import type { Recording } from '../../harness/crash/writelog/source.ts';
import { plantCommitBeforeJournalBlock } from './plant.ts';

// A write-log scenario through the real runner on the stock kernel: one
// recorded run, its states checked on the host as cases (e2fsck recovery in
// place, the kernel recovery on a seeded sample), counted in the report.
// Then the same recording with a write-ordering bug planted in its log
// (a commit block logged before a journal block it covers) through the
// unit runner: the failing power-loss states are minimised to the writes
// that matter, explained, and their crash image kept once per signature.
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const base = await buildImage(await loadRecipe('small-4k'));
const tmp = await TempDir.create('writelog-unit-test');
t.teardown(() => tmp.remove());

const steps = `recipe: small-4k
steps:
  - mount: [commit=30]
  - migrate: /shapes/dind-first
  - sync
  - migrate: { paths: [/shapes/ind-13, /shapes/fragmented], name: migrate-ind }
  - fsync: { path: /shapes/ind-13, name: fsync-ind }
  - write: { path: /new-file, size: 20000 }
  - fsync: { path: /new-file, name: fsync-new }
  - umount
`;
const scenario = join(tmp.path, 'unitrun.yaml');
await writeFile(
  scenario,
  `${steps}recovery: [e2fsck, kernel]\ncrash-states: { from: log, prefixes: all, power-loss: { per-epoch: 2, seed: 1 }, budget: 20, kernel-sample: 1 }\n`,
);
const out = tmp.join('run');
const started = performance.now();
// --keep all: the planted test below reuses this unit's log (under --keep failed a unit that passed drops it: tested at the end).
const { summary } = await runSuite({ inputs: [scenario], kernel, jobs: 2, seed: 5, out, keep: 'all' });
const runMs = performance.now() - started;
const unitDir = join(out, caseRelDir('unitrun/log/r1'));

t.test('every state of the recorded log is a case named after its unit, labelled by its kind', async (t) => {
  t.comment(`${summary.cases.length} states in ${Math.round(runMs / 1000)} s (recording included)`);
  t.ok(summary.cases.length >= 8 && summary.cases.length <= 20, `${summary.cases.length} cases within the budget of 20`);
  for (const c of summary.cases) {
    t.match(c.id, /^unitrun\/log\/[a-z0-9~.-]+\/r1$/, c.id);
    t.equal(c.pointLabel, `log-${(c.fired as LogStateFired).stateKind}`);
    t.match(c.fired, { kind: 'log', unit: 'unitrun/log/r1' });
    t.ok(c.durationMs > 0, `${c.id}: took ${c.durationMs} ms`);
  }
  const kinds = new Set(summary.cases.map((c) => c.pointLabel));
  t.same([...kinds].sort(), ['log-power-loss', 'log-prefix'], 'prefix and power-loss states');
  t.same(
    summary.cases
      .filter((c) => c.status !== 'pass')
      .map((c) => `${c.id}: ${c.status} ${c.error ?? ''} ${c.failing.map((f) => f.code).join(',')}`),
    [],
    'the stock kernel passes every state',
  );
  t.ok(
    summary.cases.every((c) => c.findings.every((f) => f.class === 'leak')),
    'with leak findings only',
  );
  const counts = {
    prefix: summary.cases.filter((c) => c.pointLabel === 'log-prefix').length,
    powerLoss: summary.cases.filter((c) => c.pointLabel === 'log-power-loss').length,
  };
  t.match(
    textReport(summary),
    new RegExp(
      `write-log: ${summary.cases.length} crash states from 1 recorded run\\(s\\): ${counts.prefix} prefix, ${counts.powerLoss} power-loss`,
    ),
    'the report counts them',
  );
});

t.test('the unit folder holds the log, the recording and the plan; the disk image is gone', async (t) => {
  const files = await readdir(unitDir);
  for (const f of ['workload.log', 'workload.log.digest', 'recording.json', 'states.json', 'workload-console.log'])
    t.ok(files.includes(f), f);
  t.notOk(files.includes('disk.img'), 'the recorded disk is not kept (the states come from the base and the log)');
  const plan = JSON.parse(await readFile(join(unitDir, 'states.json'), 'utf8')) as { states: Array<{ name: string }> };
  t.same(
    plan.states.map((s) => `unitrun/log/${s.name}/r1`).sort(),
    summary.cases.map((c) => c.id).sort(),
    'one case per planned state',
  );
});

t.test('the kernel recovery ran on the seeded sample only; expectations follow the acks', async (t) => {
  const kernelRecovered = summary.cases.filter(
    (c) => c.findings.some((f) => f.recovery === 'kernel') || (c.phases?.recoveryMs ?? 0) > 1500,
  );
  const withConsole: string[] = [];
  for (const c of summary.cases)
    if (
      await access(resolve(out, c.dir, 'recovery-console.log')).then(
        () => true,
        () => false,
      )
    )
      withConsole.push(c.id);
  t.equal(withConsole.length, 1, `one state booted the kernel to recover: ${withConsole.join(', ')}`);
  t.ok(kernelRecovered.length <= 1);
  for (const c of summary.cases) {
    const exp = JSON.parse(await readFile(resolve(out, c.dir, 'expectations.json'), 'utf8')) as { mustBeExtents: string[] };
    const synced = (c.fired as LogStateFired).acksBefore.includes('sync');
    t.equal(
      exp.mustBeExtents.includes('/shapes/dind-first'),
      synced,
      `${c.id}: dind-first must be extent-mapped exactly when the sync was acknowledged`,
    );
  }
});

t.test('a planted ordering bug: failing power-loss states, minimised, explained, one image per signature', async (t) => {
  // The same recording in a fresh results folder, its log with a commit block moved before a journal block it covers.
  const plantedDir = tmp.join('planted');
  const plantedUnit = join(plantedDir, caseRelDir('unitrun/log/r1'));
  await cp(unitDir, plantedUnit, { recursive: true });
  const planted = await (async () => {
    await using log = await WriteLog.open(join(unitDir, 'workload.log'));
    // `return await`: the log is closed when this block ends.
    return await plantCommitBeforeJournalBlock(log, base.path, join(plantedUnit, 'workload.log'), { mergeNext: true });
  })();
  t.comment(
    `planted: commit block ${planted.commitBlock} of transaction ${planted.transaction} before journal block ${planted.journalBlock} (copy of block ${planted.homeBlock})`,
  );
  // The acks measured the original log: in the planted one, no step counts as acknowledged before its end.
  const recording = JSON.parse(await readFile(join(plantedUnit, 'recording.json'), 'utf8')) as Recording;
  recording.acks = recording.acks.map((a) => ({ ...a, startBytes: Number.MAX_SAFE_INTEGER, ackBytes: Number.MAX_SAFE_INTEGER }));
  await writeFile(join(plantedUnit, 'recording.json'), JSON.stringify(recording));

  // The same scenario name: what the steps wrote (and the unit's seed) derive from it.
  const s = await parseScenario(
    join(tmp.path, 'planted.yaml'),
    `name: unitrun\n${steps}recovery: [e2fsck]\ncrash-states: { from: log, prefixes: none, power-loss: { per-epoch: 16, seed: 1 }, budget: 200, minimize: 2 }\n`,
  );
  const [unit] = expandLogUnits([s], 5);
  const env = {
    machines: new MachinePool({ slots: 2 }),
    kernel,
    initrd,
    images: new Map([['small-4k', base]]),
    keep: 'failed' as const,
    jobs: 2,
    crashImages: new CrashImageStore(plantedDir),
  };
  const prepared = await prepareLogUnit(unit!, env, plantedUnit, { reuse: true });
  t.equal(prepared.recorded, false, 'the recording in the folder is reused, not made again');
  const results: CaseResult[] = [];
  await runLogUnit(
    prepared,
    env,
    (id) => join(plantedDir, caseRelDir(id)),
    async (r) => void results.push(r),
  );
  t.equal(results.length, prepared.specs.length, 'every planned state is a case');
  const failing = results.filter((r) => r.status === 'fail');
  t.comment(failing.map((r) => `${r.id}: ${[...new Set(r.failing.map((f) => `${f.class}:${f.code}`))].join(', ')}`).join('\n'));
  t.ok(failing.length > 0, 'some power-loss states fail');
  t.equal(
    new Set(failing.map((r) => (r.fired as LogStateFired).epoch)).size,
    1,
    'all in the epoch where the bug was planted: the other states of the recorded run pass',
  );
  t.same(
    results.filter((r) => r.status === 'error').map((r) => `${r.id}: ${r.error}`),
    [],
    'no state errored',
  );

  const minimized = failing.filter((r) => (r.fired as LogStateFired).minimized);
  t.ok(minimized.length >= 1 && minimized.length <= 2, `${minimized.length} minimised (budget 2)`);
  const victim = minimized.find((r) =>
    (r.fired as LogStateFired).minimized!.dropped.some((d) =>
      d.summary?.includes(`transaction ${planted.transaction}'s copy of block ${planted.homeBlock}`),
    ),
  );
  t.ok(victim, 'a minimised state lost exactly the journal block that came after its commit');
  if (victim) {
    const m = (victim.fired as LogStateFired).minimized!;
    t.equal(m.dropped.length, 1, `one lost write matters: ${m.dropped.map((d) => d.summary).join('; ')}`);
    t.ok(
      m.needed.some((n) => n.summary?.includes(`jbd2 commit block`) && n.summary.includes(`transaction ${planted.transaction}`)),
      'and the commit block that did land is needed',
    );
    const text = await readFile(resolve(plantedDir, victim.dir, 'writes-that-matter.txt'), 'utf8');
    t.match(text, /lost .*block bitmap of group 0/, 'written out for the bug report');
    t.ok(
      victim.failing.some((f) => f.detail?.includes('Writes that matter')),
      'and carried by the failing findings',
    );
  }

  // Crash images: one per failing signature, nothing for the others but a pointer.
  const signatures = new Set(failing.flatMap((r) => r.failing.map((f) => formatSignature(signatureOf(r, f)))));
  const kept: CaseResult[] = [];
  const exists = (p: string) =>
    access(p).then(
      () => true,
      () => false,
    );
  for (const r of failing) if (await exists(resolve(plantedDir, r.dir, keptImageName))) kept.push(r);
  t.ok(
    kept.length >= 1 && kept.length <= signatures.size,
    `${kept.length} crash image(s) for ${signatures.size} failing signature(s), ${failing.length} failing states`,
  );
  t.ok(
    kept.some((r) => (r.fired as LogStateFired).minimized),
    'a minimised state is the one kept',
  );
  for (const r of failing.filter((x) => !kept.includes(x)))
    t.ok((r.fired as LogStateFired).keptImageIn, `${r.id} points at the case that keeps its signature's image`);
  for (const r of results.filter((x) => x.status === 'pass'))
    t.notOk(await exists(resolve(plantedDir, r.dir, keptImageName)), `${r.id}: no image for a passing state`);
  // Kept as a kill case's image is: the changed blocks over the run's compressed base, exported back to a raw state image.
  for (const r of kept) {
    const dir = resolve(plantedDir, r.dir);
    t.notOk(await exists(join(dir, 'crash.img')), `${r.id}: no raw image left beside crash.qcow2`);
    const raw = await exportCrashImage(dir, tmp.join(`export-${kept.indexOf(r)}.img`));
    t.equal((await stat(raw)).size, (await stat(base.path)).size, "the exported image is the disk's size");
    t.not(await sha256File(raw), await sha256File(base.path), 'and a crash state, not the base');
  }
  await access(join(plantedUnit, 'workload.log'));
});

t.test(
  '--keep failed: a unit whose every state passed drops its log (it reruns from its seed); its recording and plan stay',
  async (t) => {
    const passedDir = tmp.join('passed');
    const passedUnit = join(passedDir, caseRelDir('unitrun/log/r1'));
    await cp(unitDir, passedUnit, { recursive: true });
    const s = await parseScenario(
      join(tmp.path, 'passed.yaml'),
      `name: unitrun\n${steps}recovery: [e2fsck]\ncrash-states: { from: log, prefixes: all, power-loss: none, budget: 20 }\n`,
    );
    const [unit] = expandLogUnits([s], 5);
    const env = {
      machines: new MachinePool({ slots: 1 }),
      kernel,
      initrd,
      images: new Map([['small-4k', base]]),
      keep: 'failed' as const,
      jobs: 2,
    };
    const prepared = await prepareLogUnit(unit!, env, passedUnit, { reuse: true });
    const results: CaseResult[] = [];
    await runLogUnit(
      prepared,
      env,
      (id) => join(passedDir, caseRelDir(id)),
      async (r) => void results.push(r),
    );
    t.ok(results.length > 0 && results.every((r) => r.status === 'pass'), `${results.length} states, all passed`);
    const files = await readdir(passedUnit);
    t.notOk(files.includes('workload.log'), 'the log is gone');
    t.notOk(files.includes('workload.log.digest'), 'and its digest');
    for (const f of ['recording.json', 'states.json']) t.ok(files.includes(f), `${f} stays`);
  },
);

t.test(
  '--resume of a finished run whose passing unit dropped its log: nothing recorded again, every state still a result',
  async (t) => {
    const again = tmp.join('resumed');
    await cp(out, again, { recursive: true });
    const unitAgain = join(again, caseRelDir('unitrun/log/r1'));
    await rm(join(unitAgain, 'workload.log'));
    const { summary: resumed } = await runSuite({ inputs: [], kernel, resume: again });
    t.same(
      resumed.cases.map((c) => `${c.id} ${c.status}`).sort(),
      summary.cases.map((c) => `${c.id} ${c.status}`).sort(),
      'the same states and verdicts',
    );
    t.notOk((await readdir(unitAgain)).includes('workload.log'), 'the workload was not recorded again');
  },
);
