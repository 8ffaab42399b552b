import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { MachinePool } from '../../harness/vm/machine/pool.ts';
import { recordSuiteLogs } from '../../harness/bench/oracle-bench.ts';
import { unitFolder } from '../../harness/bench/recording-store.ts';
import type { MachineLauncher } from '../../harness/vm/machine/machine.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// `qcrash bench --recordings DIR`: the first bench run records a unit's log
// (a real VM) and keeps it in DIR; the next reuses it without a VM and plans
// exactly the same states; a recording made with other steps is recorded
// again, and the bench says why.
const kernel = await stockKernel();
const tmp = await TempDir.create('recording-store-test');
t.teardown(() => tmp.remove());
const scenario = tmp.join('store.yaml');
await writeFile(
  scenario,
  `recipe: small-4k
steps:
  - mount: [commit=30]
  - migrate: /shapes/dind-first
  - sync
  - umount
crash-states: { from: log, prefixes: all, power-loss: { per-epoch: 1, seed: 1 }, budget: 8 }
`,
);
const store = tmp.join('recordings');
/** No machine may be started: the recording must come from the store. */
const noMachines: MachineLauncher = {
  launch: () => Promise.reject(new Error('a machine was started: the stored recording was not reused')),
};

const suite = async (machines: MachineLauncher, dir: string, lines: string[]) =>
  recordSuiteLogs({ machines, kernel, jobs: 1, scenarios: [scenario], store, onProgress: (l) => lines.push(l) }, tmp.join(dir));
const states = (r: Awaited<ReturnType<typeof suite>>) => r.prepared.flatMap((p) => p.specs.map((s) => s.id));

t.test('recorded once, then reused from the store with the same states; other steps are recorded again', async (t) => {
  const first: string[] = [];
  const a = await suite(new MachinePool({ slots: 1 }), 'a', first);
  t.equal(a.prepared.length, 1);
  t.equal(a.prepared[0]!.recorded, true, 'the first run records the unit');
  t.match(first.join('\n'), /recording store\/log\/r1 \(.*: not recorded there yet\)/);
  const unitDir = unitFolder(store, 'store/log/r1');
  const stamp = JSON.parse(await readFile(join(unitDir, 'bench-recording.json'), 'utf8')) as Record<string, unknown>;
  t.match(stamp, { unit: 'store/log/r1', kernel: kernel.id }, 'kept in the store with what it was recorded with');

  const b = await suite(noMachines, 'b', []);
  t.equal(b.prepared[0]!.recorded, false, 'reused: no machine started');
  t.ok(states(a).length > 1, `${states(a).length} states`);
  t.same(states(b), states(a), 'the same states, by name');

  await writeFile(join(unitDir, 'bench-recording.json'), JSON.stringify({ ...stamp, steps: 'other' }));
  const third: string[] = [];
  const c = await suite(new MachinePool({ slots: 1 }), 'c', third);
  t.equal(c.prepared[0]!.recorded, true, 'recorded again');
  t.match(third.join('\n'), /recorded with another steps/, 'and the bench says why');
  const restamped = JSON.parse(await readFile(join(unitDir, 'bench-recording.json'), 'utf8')) as Record<string, unknown>;
  t.equal(restamped.steps, stamp.steps, "the store now holds this run's recording");
});
