import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runSuite } from '../../harness/run/runner.ts';
import { exitCodeFor } from '../../harness/results/verdict.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher } from '../helpers/fake-machine.ts';
import { fakeKernel } from '../helpers/fake-suite.ts';

// A write-log unit whose workload cannot be recorded is one error case in
// its place (never a pass, never silence), beside the kill cases of the
// same run, with a scripted machine instead of QEMU.
const tmp = await TempDir.create('writelog-fake-test');
t.teardown(() => tmp.remove());
const kernel = fakeKernel('fake', 'fake');

t.test('a recording that fails is an error case named after its unit; the kill cases still run', async (t) => {
  const scenario = join(tmp.path, 'nolog.yaml');
  await writeFile(
    scenario,
    `recipe: small-4k
recovery: [e2fsck]
steps:
  - mount
  - sync
kill:
  - after: sync
crash-states: { from: log, budget: 10 }
`,
  );
  // The logged machine's mount fails in the guest; the kill case's machine (restored or not) mounts fine.
  const machines = new FakeLauncher((spec) => ({
    script: (cmd) => (cmd === 'mount' && spec.disk.writeLog ? { exitCode: 32, output: 'mount: wrong fs type' } : undefined),
  }));
  const { summary } = await runSuite({
    inputs: [scenario],
    kernel,
    jobs: 1,
    seed: 1,
    out: join(tmp.path, 'out'),
    keep: 'none',
    machines,
    snapshots: false,
  });
  const byId = new Map(summary.cases.map((c) => [c.id, c]));
  t.same([...byId.keys()].sort(), ['nolog/after-sync/r1', 'nolog/log/r1']);
  t.match(byId.get('nolog/log/r1'), {
    status: 'error',
    pointLabel: 'log-recording',
    error: /the workload could not be recorded: mount failed in the guest \(exit 32\)/,
  });
  t.equal(byId.get('nolog/after-sync/r1')?.status, 'pass');
  t.equal(exitCodeFor(summary), 3, 'a run with a unit that could not be recorded is an infrastructure error');
});
