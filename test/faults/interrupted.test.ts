import t from 'tap';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { runSuite } from '../../harness/run/runner.ts';
import { caseRelDir, loadSummary, RunStore } from '../../harness/results/store.ts';
import { compareRuns, comparisonExitCode } from '../../harness/compare/compare.ts';
import { writeJsonAtomic } from '../../harness/util/atomic.ts';
import type { RunMeta } from '../../harness/results/run.ts';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { FakeLauncher } from '../helpers/fake-machine.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';
import { qcrash } from '../helpers/cli.ts';

// A run interrupted after 1 of its 3 cases, as its folder is left: run.json,
// one case.json, no summary or reports (Ctrl-C ends the process before the
// summary; the real signal is test/faults/run.test.ts). Every reader must
// count the two planned cases that never ran as not run: never PASS.
// Not a qcrash- temp dir: a run's sweep of other processes' leftovers must not be able to touch it.
const tmp = { path: await mkdtemp(join(tmpdir(), 'faults-interrupted-')) };
t.teardown(() => rm(tmp.path, { recursive: true, force: true }));
const scenario = await writeStepsScenario(join(tmp.path, 'three.yaml'));
const machines = new FakeLauncher();
const results = join(tmp.path, 'results');

async function fullRun(name: string) {
  return runSuite({
    inputs: [scenario],
    kernel: fakeKernel('fake'),
    seed: 3,
    jobs: 1,
    machines,
    snapshots: false,
    keep: 'none',
    out: join(results, name),
  });
}

/** The folder as Ctrl-C after the first case leaves it. */
async function interruptAfterFirst(dir: string): Promise<string[]> {
  const ids = (await loadSummary(dir)).cases.map((c) => c.id);
  for (const f of ['summary.json', 'report.txt', 'junit.xml', 'results.tap', 'results.ktap', 'report.html'])
    await rm(join(dir, f), { force: true });
  for (const id of ids.slice(1)) await rm(join(dir, caseRelDir(id)), { recursive: true });
  return ids;
}

const complete = await fullRun('a-complete');
const cut = await fullRun('b-cut');
const ids = await interruptAfterFirst(cut.dir);

t.test('run.json plans every case before the first one runs', async (t) => {
  t.equal(complete.summary.counts.pass, 3, 'the scenario passes when it runs whole');
  const meta = JSON.parse(await readFile(join(cut.dir, 'run.json'), 'utf8')) as RunMeta;
  t.same(meta.plan!.cases.map((c) => c.id).sort(), [...ids].sort());
  t.same(meta.plan!.units, []);
});

t.test('qcrash report: interrupted, not PASS, in every report; exit non-zero', async (t) => {
  const r = await qcrash(['report', cut.dir]);
  t.equal(r.code, 3, r.stderr);
  t.match(r.stderr, `interrupted: 1 of 3 cases; finish it with: qcrash run --resume ${cut.dir}`);
  const text = await readFile(join(cut.dir, 'report.txt'), 'utf8');
  t.match(text, /cases: +3 total, 1 passed, 0 failed, 0 errors, 0 not reached, 2 not run/);
  t.match(text, /interrupted: 1 of 3 cases/);
  t.match(text, /Result: INTERRUPTED \(2 not run\)/);
  t.notMatch(text, /Result: PASS/);
  const junit = await readFile(join(cut.dir, 'junit.xml'), 'utf8');
  t.match(junit, /<testsuites name="qcrash [^"]*interrupted: 1 of 3 cases[^"]*" tests="3" failures="0" errors="2"/);
  t.equal(junit.match(/<error message="not run: the run stopped before this case" type="not-run">/g)?.length, 2);
  const tap = await readFile(join(cut.dir, 'results.tap'), 'utf8');
  t.match(tap, /^TAP version 13\n1\.\.3\n# interrupted: 1 of 3 cases/);
  t.equal(tap.match(/^not ok \d+ - /gm)?.length, 2, 'two not ok');
  const prove = await execa('prove', ['-e', 'cat', join(cut.dir, 'results.tap')], { reject: false });
  t.not(prove.exitCode, 0, 'prove fails the TAP');
  t.match(await readFile(join(cut.dir, 'results.ktap'), 'utf8'), /not ok \d+ .* # ERROR not run/);
  const html = await readFile(join(cut.dir, 'report.html'), 'utf8');
  t.match(html, /id="run-verdict"[^>]*>[^]*?INTERRUPTED: 1 of 3 cases/);
  t.notMatch(html, /PASS: all/);
  t.equal((await loadSummary(cut.dir)).finishedAt, undefined, 'an interrupted run has no finish time');
});

t.test('qcrash history: the run is listed as interrupted, with how to resume', async (t) => {
  const r = await qcrash(['history', results]);
  t.equal(r.code, 0, r.stderr);
  t.match(
    r.stderr,
    new RegExp(`${(await loadSummary(cut.dir)).runId} interrupted: 1 of 3 cases; finish it with: qcrash run --resume ${cut.dir}`),
  );
  const index = JSON.parse(await readFile(join(results, 'history.json'), 'utf8'));
  const entry = index.runs.find((x: { dir: string }) => x.dir === 'b-cut');
  t.match(entry, { counts: { pass: 1, notRun: 2 }, interrupted: { done: 1, planned: 3 } });
  t.ok(
    entry.scenarios.every((s: { verdict: string }) => s.verdict !== 'pass'),
    'no scenario of it is a pass',
  );
  t.match(await readFile(join(results, 'history.html'), 'utf8'), /interrupted: 1 of 3 cases/);
});

t.test('qcrash compare: an interrupted newer run is not a clean night', async (t) => {
  const c = compareRuns(complete.summary, await loadSummary(cut.dir));
  t.equal(c.worse.length, 2, 'pass -> not-run is worse');
  t.equal(comparisonExitCode(c), 1);
  const r = await qcrash(['compare', complete.dir, cut.dir]);
  t.equal(r.code, 1);
  t.match(r.stdout, /INTERRUPTED: .* interrupted: 1 of 3 cases/);
});

t.test('--resume finishes it: the same plan, all three pass', async (t) => {
  const r = await runSuite({
    inputs: [],
    kernel: fakeKernel('fake'),
    jobs: 1,
    machines,
    keep: 'none',
    snapshots: false,
    resume: cut.dir,
  });
  t.equal(r.summary.counts.pass, 3);
  t.equal(r.summary.counts.notRun, 0);
  t.equal(r.summary.interrupted, undefined);
  t.ok(r.summary.finishedAt);
});

t.test('a write-log unit counts as its budget until recorded; once recorded, by its states', async (t) => {
  const dir = join(tmp.path, 'units');
  const meta = { ...(JSON.parse(await readFile(join(complete.dir, 'run.json'), 'utf8')) as RunMeta) };
  const unit = (rep: number) => ({
    id: `dur/log/r${rep}`,
    scenario: 'dur',
    suite: 'default',
    pointLabel: 'log-recording',
    repetition: rep,
    seed: 1,
    budget: 40,
  });
  meta.plan = { cases: [], units: [unit(1), unit(2)] };
  const store = await RunStore.create(dir, meta);
  // r1 is recorded with three states, one checked; r2 never was.
  await writeJsonAtomic(join(store.caseDir('dur/log/r1'), 'states.json'), {
    unit: 'dur/log/r1',
    states: ['flush-1', 'flush-2', 'end'].map((name) => ({ name, kind: 'prefix' })),
  });
  const one = { ...complete.summary.cases[0]!, id: 'dur/log/flush-1/r1', scenario: 'dur' };
  await store.writeCase(one);
  const s = await loadSummary(dir);
  t.same(
    s.cases.map((c) => [c.id, c.status]),
    [
      ['dur/log/end/r1', 'not-run'],
      ['dur/log/flush-1/r1', 'pass'],
      ['dur/log/flush-2/r1', 'not-run'],
      ['dur/log/r2', 'not-run'],
    ],
  );
  t.match(s.interrupted, { done: 1, planned: 43, unrecorded: [{ id: 'dur/log/r2', budget: 40 }] });
  const r = await qcrash(['report', dir]);
  t.equal(r.code, 3);
  t.match(r.stderr, /interrupted: 1 of 43 cases \(1 write log\(s\) not recorded, each counted as its budget: dur\/log\/r2 40\)/);
  t.match(await readFile(join(dir, 'report.txt'), 'utf8'), /dur\/log\/r2 \(write log not recorded: up to 40 states\)/);
  t.ok((await readdir(dir)).includes('junit.xml'));
});
