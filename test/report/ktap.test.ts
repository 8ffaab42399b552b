import t from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ktapDocument, KtapReporter } from '../../harness/report/ktap.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import type { CaseSpec } from '../../harness/scenario/model.ts';
import { countStatuses } from '../../harness/results/run.ts';
import { kunitTools, parseKtapFile, type KunitTest } from '../helpers/kunit.ts';

// KTAP checked with the kernel's own parser (kunit_parser.py of
// linux-source-6.1) on the summary of a real run (test/fixtures/report/
// summary.json: three scenarios, a real failing case and a real error).
const summary = JSON.parse(await readFile(new URL('../fixtures/report/summary.json', import.meta.url), 'utf8')) as RunSummary;
const dir = await mkdtemp(join(tmpdir(), 'ktap-test-'));
const kunit = await kunitTools();
t.teardown(async () => {
  await kunit[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});
t.comment(`kunit_parser.py from ${kunit.origin}`);

let files = 0;
async function parse(ktap: string): Promise<KunitTest> {
  const f = join(dir, `${++files}.ktap`);
  await writeFile(f, ktap);
  return (await parseKtapFile(kunit.dir, f)).test;
}

const statusOf = (c: CaseResult) => (c.status === 'pass' ? 'SUCCESS' : 'FAILURE');
const scenarioNames = (cases: readonly CaseResult[]) => [...new Set(cases.map((c) => c.scenario))];
/** The tree kunit_parser should build for these cases: scenario -> case name -> status. */
function expectedTree(cases: readonly CaseResult[]) {
  return Object.fromEntries(
    scenarioNames(cases).map((s) => [
      s,
      Object.fromEntries(cases.filter((c) => c.scenario === s).map((c) => [c.id.slice(s.length + 1), statusOf(c)])),
    ]),
  );
}
const parsedTree = (main: KunitTest) =>
  Object.fromEntries(main.subtests.map((s) => [s.name, Object.fromEntries(s.subtests.map((c) => [c.name, c.status]))]));

/** What the runner hands reporters before the first case: the specs (only the scenario name matters here). */
const specsOf = (cases: readonly CaseResult[]) =>
  cases.map((c) => ({ id: c.id, scenario: { name: c.scenario } }) as unknown as CaseSpec);
const { cases: _cases, counts: _counts, finishedAt: _f, ...meta } = summary;

t.test('results.ktap: one subtest per scenario, one test per case, counts and statuses as in summary.json', async (t) => {
  const main = await parse(ktapDocument(summary));
  t.equal(main.counts.errors, 0, 'kunit_parser found nothing malformed');
  t.equal(main.status, 'FAILURE');
  t.equal(main.expected_count, scenarioNames(summary.cases).length);
  t.same(
    main.subtests.map((s) => s.name),
    scenarioNames(summary.cases),
  );
  t.same(parsedTree(main), expectedTree(summary.cases));
  t.equal(main.counts.passed, summary.counts.pass);
  t.equal(main.counts.failed, summary.counts.total - summary.counts.pass, 'fail and error are failed');
  t.equal(main.counts.skipped, 0, 'nothing is skipped');
  t.equal(main.counts.crashed, 0);
  for (const s of main.subtests)
    t.equal(
      s.status,
      summary.cases.some((c) => c.scenario === s.name && c.status !== 'pass') ? 'FAILURE' : 'SUCCESS',
      `scenario ${s.name}`,
    );
  const failing = summary.cases.find((c) => c.status === 'fail')!;
  const log = main.subtests
    .find((s) => s.name === failing.scenario)!
    .subtests.find((c) => c.name === failing.id.slice(failing.scenario.length + 1))!
    .log.join('\n');
  t.match(log, failing.failing[0]!.code, 'the failing finding is in the diagnostic lines before the result');
});

t.test(
  'errors and unreached crash points are failures, never skips, even with "# SKIP" or console-end phrases in their text',
  async (t) => {
    const [err] = summary.cases.filter((c) => c.status === 'error');
    const fail = summary.cases.find((c) => c.status === 'fail')!;
    const cases: CaseResult[] = [
      {
        ...fail,
        failing: [
          {
            ...fail.failing[0]!,
            class: 'kernel',
            message: 'Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)',
          },
        ],
      },
      { ...err!, id: `${err!.scenario}/x#1/r1`, error: 'guest said: # SKIP this\nreboot: System halted' },
      {
        ...err!,
        id: `${err!.scenario}/kernel-migrate-ext4_ext_migrate-hit9/r1`,
        status: 'not-reached',
        error: 'ext4_ext_migrate was hit 3 times, never 9',
      },
      ...summary.cases.filter((c) => c.status === 'pass'),
    ];
    const doc = ktapDocument({ ...summary, cases, counts: countStatuses(cases) });
    t.match(doc, /not ok \d+ kernel-migrate-ext4_ext_migrate-hit9\/r1 # ERROR crash point not reached\n/);
    const main = await parse(doc);
    t.equal(main.counts.errors, 0);
    t.same(
      parsedTree(main),
      { ...expectedTree(cases), [err!.scenario]: { 'x_1/r1': 'FAILURE', 'kernel-migrate-ext4_ext_migrate-hit9/r1': 'FAILURE' } },
      'every case parsed: the panic line did not end the output',
    );
    t.equal(main.counts.skipped, 0);
    t.equal(main.counts.failed, 3);
  },
);

t.test(
  'the streaming reporter: plan first, scenarios contiguous while cases finish interleaved, same tree as results.ktap',
  async (t) => {
    let text = '';
    const out = { write: (s: string) => ((text += s), true) } as unknown as NodeJS.WritableStream;
    const r = new KtapReporter(out);
    r.onRunStart(meta, summary.cases.length, specsOf(summary.cases));
    t.equal(text, `KTAP version 1\n1..${scenarioNames(summary.cases).length}\n`, 'version and plan before any case');
    // Completion order of a run with several jobs: scenarios interleave.
    const order = [...summary.cases].sort((a, b) => (a.seed % 7) - (b.seed % 7));
    t.not(order.map((c) => c.scenario).join(), summary.cases.map((c) => c.scenario).join(), 'the order really interleaves');
    r.onCaseEnd(order[0]!);
    t.match(
      text,
      new RegExp(`ok 1 ${order[0]!.id.slice(order[0]!.scenario.length + 1)}\\n$`),
      'the first case is written as soon as it finishes',
    );
    for (const c of order.slice(1)) r.onCaseEnd(c);
    const main = await parse(text);
    t.equal(main.counts.errors, 0);
    t.same(parsedTree(main), expectedTree(summary.cases));
    t.equal(main.counts.passed, summary.counts.pass);
    t.equal(main.counts.failed, summary.counts.total - summary.counts.pass);
  },
);

t.test('a run that dies before every case finished leaves a KTAP stream the parser reports as crashed, not passed', async (t) => {
  let text = '';
  const out = { write: (s: string) => ((text += s), true) } as unknown as NodeJS.WritableStream;
  const r = new KtapReporter(out);
  r.onRunStart(meta, summary.cases.length, specsOf(summary.cases));
  const passes = summary.cases.filter((c) => c.status === 'pass');
  for (const c of passes.slice(0, 3)) r.onCaseEnd(c);
  const main = await parse(text);
  t.equal(main.counts.passed, 3);
  t.ok(main.counts.crashed > 0, `missing cases counted as crashed (${main.counts.crashed})`);
  t.not(main.status, 'SUCCESS');
  t.ok(main.counts.errors > 0, 'and the parser says tests are missing');
});

t.test('a case outside the plan is refused, not written under a wrong plan', async (t) => {
  const r = new KtapReporter({ write: () => true } as unknown as NodeJS.WritableStream);
  r.onRunStart(meta, 1, specsOf(summary.cases.slice(0, 1)));
  const other = summary.cases.find((c) => c.scenario !== summary.cases[0]!.scenario)!;
  t.throws(() => r.onCaseEnd(other), /not in the plan/);
});
