import t from 'tap';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { readValidateArgs, validatePatch } from '../../harness/validate/validate.ts';
import { validateSeries } from '../../harness/validate/series.ts';
import type { BuildOptions } from '../../harness/kernel/build.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher } from '../helpers/fake-machine.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';
import { qcrash } from '../helpers/cli.ts';

// validate --line 6.12: the baseline and patched kernels are built from the
// 6.12 line (its linux-source tarball, its config fragments). The builds are
// recorded by a fake builder; scripted machines run the cases.
const tmp = await TempDir.create('validate-line-test');
t.teardown(() => tmp.remove());
const scenario = await writeStepsScenario(join(tmp.path, 'steps.yaml'));
const fix = join(process.cwd(), 'kernels/fixes/0001-ext4-don-t-let-the-credit-check-hide-the-result-of-e.patch');

/** A builder that records what it was asked for and hands out fake kernels of the line. */
function recordingBuilder(): { calls: BuildOptions[]; build: (o: BuildOptions) => Promise<KernelInfo> } {
  const calls: BuildOptions[] = [];
  return {
    calls,
    build: (o) => {
      calls.push(o);
      const k = fakeKernel(`${o.line ?? '6.1'}-${o.patches?.length ?? 0}`, `${o.line ?? '6.1'}.99`);
      return Promise.resolve({ ...k, line: o.line ?? '6.1' });
    },
  };
}

const common = { scenarios: [scenario], seed: 1, jobs: 1, confirmRuns: 1, snapshots: false };

t.test('validate --line 6.12 builds both kernels from the 6.12 line and records the line for --resume', async (t) => {
  const b = recordingBuilder();
  const out = join(tmp.path, 'v');
  const r = await validatePatch({ ...common, line: '6.12', patches: [fix], out, build: b.build, machines: new FakeLauncher() });
  t.same(
    b.calls.map((c) => ({ line: c.line, patches: c.patches ?? [], tree: c.tree })),
    [
      { line: '6.12', patches: [], tree: undefined },
      { line: '6.12', patches: [fix], tree: undefined },
    ],
    'baseline and patched: the 6.12 line, no tree',
  );
  t.equal(r.baseline.kernel.line, '6.12');
  t.equal(r.patched.kernel.line, '6.12');
  t.equal((await readValidateArgs(out)).line, '6.12', 'validate-args.json keeps the line');
  t.match(await readFile(join(out, 'validate.txt'), 'utf8'), /baseline: 6\.12\.99 \(6\.12-0\)/);
});

t.test('without --line, the builds name no line (the 6.1 default) and the args record none', async (t) => {
  const b = recordingBuilder();
  const out = join(tmp.path, 'v61');
  await validatePatch({ ...common, patches: [fix], out, build: b.build, machines: new FakeLauncher() });
  t.same(
    b.calls.map((c) => c.line),
    [undefined, undefined],
  );
  t.equal((await readValidateArgs(out)).line, undefined);
});

t.test('validate --series --line 6.12 builds the baseline and every prefix from the 6.12 line', async (t) => {
  const b = recordingBuilder();
  await validateSeries({
    ...common,
    line: '6.12',
    patches: [fix],
    out: join(tmp.path, 's'),
    build: b.build,
    machines: new FakeLauncher(),
  });
  t.same(
    b.calls.map((c) => [c.line, c.patches?.length ?? 0]),
    [
      ['6.12', 0],
      ['6.12', 1],
    ],
  );
});

t.test(
  'qcrash validate: an unknown --line is exit 2 naming the known lines (bisect-step, nightly too); --resume refuses --line',
  async (t) => {
    const bad = await qcrash(['validate', '--line', '7.0', '--patch', fix, scenario, '-o', join(tmp.path, 'bad')]);
    t.equal(bad.code, 2);
    t.match(bad.stderr, /--line 7\.0: unknown kernel line \(known: 6\.1, 6\.12\)/);
    const resumed = await qcrash(['validate', '--resume', join(tmp.path, 'v'), '--line', '6.1']);
    t.equal(resumed.code, 2);
    t.match(resumed.stderr, /--line cannot change it/);
    // bisect and nightly build a --tree: their --line picks its config fragments, checked as they parse.
    for (const cmd of [
      ['bisect-step', scenario],
      ['nightly', '--tree', '.', '--branch', 'main'],
    ]) {
      const r = await qcrash([...cmd, '--line', '7.0']);
      t.equal(r.code, 2, `${cmd[0]} --line 7.0`);
      t.match(r.stderr, /--line 7\.0: unknown kernel line/);
    }
  },
);
