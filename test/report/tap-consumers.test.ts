import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { checkImage } from '../../harness/run/check-image.ts';
import { isAllowed } from '../../harness/findings/finding.ts';
import { RunStore, caseRelDir } from '../../harness/results/store.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import { writeRunReports } from '../../harness/report/run-files.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { qcrashBin } from '../helpers/env.ts';
import { kunitTools, parseKtapFile } from '../helpers/kunit.ts';
import { prove } from '../helpers/prove.ts';
import { exportCrashImage } from '../../harness/results/crash-images.ts';

// The kernel developer's own tools on the output of real runs: Perl's prove
// (Test::Harness, Debian 12) on the TAP 13 and kunit_parser.py (the kernel's
// KTAP parser) on the KTAP. A passing run: two cases of the durability
// scenario on the stock kernel, e2fsck recovery only. A failing run: the
// same run with one case's real crash image damaged by debugfs, checked
// again and written through the store.
const tmp = await TempDir.create('tap-consumers');
const kunit = await kunitTools();
t.teardown(async () => {
  await kunit[Symbol.asyncDispose]();
  await tmp.remove();
});

function qcrash(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [qcrashBin, ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
    ),
  );
}

const runArgs = (out: string, format: string) => [
  'run',
  'scenarios/durability.yaml',
  '--kernel',
  'stock',
  '--recovery',
  'e2fsck',
  '--filter',
  'after-fsync',
  '--seed',
  '18',
  '--keep',
  'all',
  '--out',
  out,
  '--format',
  format,
];
const caseName = (c: CaseResult) => c.id.slice(c.scenario.length + 1);

const passDir = tmp.join('pass');
const passRun = await qcrash(runArgs(passDir, 'tap'));
const passSummary = JSON.parse(await readFile(join(passDir, 'summary.json'), 'utf8')) as RunSummary;

t.test('a passing run: prove says PASS on the streamed TAP and on results.tap', async (t) => {
  t.equal(passRun.code, 0, `qcrash run exits 0\n${passRun.stderr}`);
  t.equal(passSummary.counts.total, 2, 'two cases: after-fsync and after-fsync-written');
  t.equal(passSummary.counts.pass, 2);
  t.match(passRun.stdout, /^TAP version 13\n1\.\.2\n/, 'stdout is TAP 13, plan first');
  const streamed = tmp.join('stream.tap');
  await writeFile(streamed, passRun.stdout);
  for (const f of [streamed, join(passDir, 'results.tap')]) {
    const { code, out } = prove(f);
    t.equal(code, 0, `prove exits 0 on ${f}`);
    t.notMatch(out, /Parse errors/);
    for (const c of passSummary.cases) t.match(out, new RegExp(`\\nok \\d - ${c.id}\\n`), `${c.id} is ok`);
    t.match(out, /All tests successful\.\nFiles=1, Tests=2,/);
    t.match(out, /Result: PASS/);
  }
});

t.test(
  'a passing run: kunit_parser reads results.ktap and a --format ktap stream as one scenario of two passing cases',
  async (t) => {
    const streamDir = tmp.join('pass-ktap');
    const ktapRun = await qcrash(runArgs(streamDir, 'ktap'));
    t.equal(ktapRun.code, 0, ktapRun.stderr);
    t.match(ktapRun.stdout, /^KTAP version 1\n1\.\.1\n {2}KTAP version 1\n {2}# Subtest: durability\n {2}1\.\.2\n/);
    const streamed = tmp.join('stream.ktap');
    await writeFile(streamed, ktapRun.stdout);
    for (const f of [join(passDir, 'results.ktap'), streamed]) {
      const { test: main, printed } = await parseKtapFile(kunit.dir, f);
      t.equal(main.counts.errors, 0, `no parse errors in ${f}`);
      t.equal(main.status, 'SUCCESS');
      t.same(main.counts, { passed: 2, failed: 0, crashed: 0, skipped: 0, errors: 0 });
      t.same(
        main.subtests.map((s) => [s.name, s.status]),
        [['durability', 'SUCCESS']],
      );
      t.same(main.subtests[0]!.subtests.map((c) => c.name).sort(), passSummary.cases.map(caseName).sort());
      t.ok(main.subtests[0]!.subtests.every((c) => c.status === 'SUCCESS'));
      t.match(printed, /Testing complete\. Ran 2 tests: passed: 2/);
    }
  },
);

t.test('a failing run: prove says FAIL and names the failing case; kunit_parser counts one failure', async (t) => {
  // Damage the real crash image of after-fsync: free a block a file still owns.
  const victim = passSummary.cases.find((c) => c.id === 'durability/after-fsync/r1')!;
  const img = tmp.join('damaged.img');
  // Kept compressed (crash.qcow2 over the run's images/): export gives the raw image back.
  await exportCrashImage(join(passDir, caseRelDir(victim.id)), img);
  const stat = execFileSync('debugfs', ['-R', 'stat /shapes/ind-13', img], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const blk = /\((?:0|0-\d+)\):(\d+)/.exec(stat)![1]!;
  execFileSync('debugfs', ['-w', '-R', `freeb ${blk}`, img], { stdio: 'ignore' });
  const base = await buildImage(await loadRecipe('small-4k'));
  const checked = await checkImage(img, { manifestFile: join(dirname(base.path), 'manifest.json') });
  const failing = checked.findings.filter((f) => !isAllowed(f, victim.allow));
  const damaged: CaseResult = { ...victim, findings: checked.findings, failing, status: failing.length ? 'fail' : 'pass' };
  t.equal(damaged.status, 'fail', 'e2fsck finds the freed block');
  t.ok(
    failing.some((f) => f.code === '0x050005'),
    'block in use but marked free',
  );

  const { cases: _c, counts: _n, finishedAt: _f, ...meta } = passSummary;
  const store = await RunStore.create(tmp.join('fail'), { ...meta, runId: `${meta.runId}-damaged` });
  const cases = passSummary.cases.map((c) => (c.id === victim.id ? damaged : c));
  for (const c of cases) await store.writeCase(c);
  const summary = store.summary(cases, true);
  await store.writeSummary(summary);
  await writeRunReports(store.dir, summary);

  const { code, out } = prove(join(store.dir, 'results.tap'));
  t.equal(code, 1, 'prove exits 1');
  t.notMatch(out, /Parse errors/);
  const n = summary.cases.findIndex((c) => c.id === victim.id) + 1;
  t.match(
    out,
    new RegExp(`\\nnot ok ${n} - ${victim.id}\\n {2}---\\n(.*\\n)*? {2}status: "fail"\\n(.*\\n)*? {6}code: "0x050005"\\n`),
    'the failing case is named, with its finding',
  );
  t.match(out, /Failed 1\/2 subtests/);
  t.match(out, new RegExp(`Failed test: {2}${n}\\n`));
  t.match(out, /Result: FAIL/);

  const { test: main } = await parseKtapFile(kunit.dir, join(store.dir, 'results.ktap'));
  t.equal(main.counts.errors, 0);
  t.equal(main.status, 'FAILURE');
  t.same(main.counts, { passed: 1, failed: 1, crashed: 0, skipped: 0, errors: 0 });
  const scenario = main.subtests[0]!;
  t.same([scenario.name, scenario.status], ['durability', 'FAILURE']);
  const bad = scenario.subtests.find((c) => c.name === caseName(victim))!;
  t.equal(bad.status, 'FAILURE');
  t.match(bad.log.join('\n'), /corruption 0x050005 PR_5_BLOCK_USED/, 'the finding is in its diagnostic lines');
  t.equal(scenario.subtests.find((c) => c.name !== caseName(victim))!.status, 'SUCCESS');
  await rm(img, { force: true });
});
