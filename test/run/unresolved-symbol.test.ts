import t from 'tap';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { runSuite } from '../../harness/run/runner.ts';
import { validateKernels } from '../../harness/validate/validate.ts';
import { exitCodeFor } from '../../harness/results/verdict.ts';
import { textReport } from '../../harness/report/text.ts';
import { ConfigError } from '../../harness/util/errors.ts';
import { projectRoot } from '../../harness/util/paths.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher } from '../helpers/fake-machine.ts';
import { fakeKernel } from '../helpers/fake-suite.ts';

// A kill point whose function one kernel lacks (a planted bug or another
// line's inlining turned free_dind_blocks into free_dind_blocks.constprop.0,
// or dropped it) through the runner and validate's judgement, with
// scripted machines and symbol tables in System.map form
// (test/fixtures/symbols/): the kernel's cases are not judged, with the
// close matches, and everything else runs.
const tmp = await TempDir.create('unresolved-symbol-test');
t.teardown(() => tmp.remove());
const map = (name: string) => join(projectRoot, 'test/fixtures/symbols', name);
const withMap = (id: string, file: string) => ({ ...fakeKernel(id), systemMap: map(file) });

const scenario = join(tmp.path, 'dind.yaml');
await writeFile(
  scenario,
  [
    'recipe: small-4k',
    'recovery: [e2fsck]',
    'steps:',
    '  - mount',
    '  - migrate: /shapes/dind-first',
    '  - sync',
    'kill:',
    '  - after: sync',
    '  - kernel: { step: migrate, symbol: free_dind_blocks, hit: 1 }',
    '',
  ].join('\n'),
);
const machines = new FakeLauncher(() => ({}));
const run = (kernel: ReturnType<typeof withMap>, out: string, missingSymbols?: 'not-judged') =>
  runSuite({
    inputs: [scenario],
    kernel,
    seed: 1,
    out: join(tmp.path, out),
    machines,
    snapshots: false,
    ...(missingSymbols ? { missingSymbols } : {}),
  });

t.test('a one-kernel run keeps the up-front exit 2 for a symbol the kernel lacks (most likely a typo)', async (t) => {
  await t.rejects(run(withMap('k-missing-1', 'missing.map'), 'typo'), ConfigError);
});

t.test(
  "under not-judged, the missing symbol's cases are not judged (never green, never a finding) and the run goes on",
  async (t) => {
    const { summary } = await run(withMap('k-missing-2', 'missing.map'), 'nj', 'not-judged');
    const byPoint = new Map(summary.cases.map((c) => [c.pointLabel, c]));
    const kernelCase = [...byPoint.values()].find((c) => c.pointLabel !== 'after-sync')!;
    t.equal(kernelCase.status, 'not-reached');
    t.equal(kernelCase.errorKind, 'KernelSymbolMissing');
    t.match(
      kernelCase.error,
      /^not judged on k-missing-2: unknown kernel symbol "free_dind_blocks".*Close matches: .*free_dind_blocks_rcu/,
    );
    t.same(kernelCase.failing, [], 'no finding: it is not a kernel bug');
    t.equal(byPoint.get('after-sync')?.status, 'pass', 'the other point ran');
    t.equal(exitCodeFor(summary), 3, 'not judged is never green');
    t.match(textReport(summary), /NOT-REACHED .*free_dind_blocks[\s\S]*not judged on k-missing-2/);
    t.notOk(
      machines.machines.some((m) => m.spec.kernel.id === 'k-missing-2' && m.spec.gdb),
      'no machine was started for the unjudged case',
    );
  },
);

t.test('validate: a patched kernel that lacks the symbol judges the rest and lists the case as not judged', async (t) => {
  const r = await validateKernels({
    baseline: withMap('k-plain', 'plain.map'),
    patched: withMap('k-missing-3', 'missing.map'),
    scenarios: [scenario],
    seed: 1,
    jobs: 1,
    confirmRuns: 1,
    out: join(tmp.path, 'val'),
    machines,
    snapshots: false,
  });
  t.same(r.introduced, []);
  t.equal(r.notJudged.patched.length, 1, 'the kernel point on the patched kernel');
  t.match(r.notJudged.patched[0], /free_dind_blocks/);
  t.equal(r.patched.summary.cases.find((c) => c.pointLabel === 'after-sync')?.status, 'pass');
});

t.test('a kernel that has the function only as a clone leaves nothing unresolved', async (t) => {
  const { summary } = await run(withMap('k-clone', 'clone-only.map'), 'clone', 'not-judged');
  const kernelCase = summary.cases.find((c) => c.pointLabel !== 'after-sync')!;
  t.not(kernelCase.errorKind, 'KernelSymbolMissing', 'resolved (to free_dind_blocks.constprop.0): armed, not skipped');
});
