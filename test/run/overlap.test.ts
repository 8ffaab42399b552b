import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MachinePool } from '../../harness/vm/machine/pool.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';
import { runSuite } from '../../harness/run/runner.ts';
import { casesInFlight } from '../../harness/run/suite-session.ts';
import { systematicSample } from '../../harness/bench/bench.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeMachine } from '../helpers/fake-machine.ts';
import { fakeKernel } from '../helpers/fake-suite.ts';

// The machine budget and the runner's overlap, with scripted machines: the
// pool hands a free slot to a waiting recovery before waiting workloads,
// and the runner keeps more cases in flight than slots, so one case's
// host-side checks (real e2fsck and debugfs here) run while the next
// case's machine holds the slot.
const tmp = await TempDir.create('overlap-test');
t.teardown(() => tmp.remove());
const kernel: KernelInfo = fakeKernel('fake', 'fake');
const spec = (role: MachineSpec['role']): MachineSpec => ({
  role,
  kernel,
  initrd: '/nonexistent',
  disk: { path: '/nonexistent', format: 'raw' },
});

t.test('a freed slot goes to a waiting recovery first, then to waiting launches in order', async (t) => {
  const pool = new MachinePool({ slots: 1, launch: async (s) => new FakeMachine(s) });
  const first = await pool.launch(spec('workload'));
  const order: string[] = [];
  const waiting = (['workload', 'recovery', 'workload', 'recovery'] as const).map((role, i) =>
    pool.launch(spec(role)).then(async (m) => {
      order.push(`${role}${i}`);
      t.ok((m.queuedMs ?? 0) > 0, `${role}${i} says it waited (${m.queuedMs?.toFixed(1)} ms)`);
      await new Promise((r) => setTimeout(r, 5));
      await m.shutdown();
    }),
  );
  await new Promise((r) => setTimeout(r, 20));
  t.equal(pool.busy, 1, 'the one slot is taken, the rest wait');
  await first.shutdown();
  await Promise.all(waiting);
  t.same(order, ['recovery1', 'recovery3', 'workload0', 'workload2']);
  t.equal(pool.peak, 1, 'never more machines than slots');
  t.equal(first.queuedMs, 0, 'a launch with a free slot does not wait');
});

t.test("the runner overlaps a case's checks with the next case's machine, within the slots", async (t) => {
  const launches: Array<{ at: number; role: string }> = [];
  const pool = new MachinePool({
    slots: 1,
    launch: async (s) => {
      launches.push({ at: performance.now(), role: s.role });
      return new FakeMachine(s, { script: (cmd) => (cmd === 'mount' ? { ms: 30 } : {}) });
    },
  });
  const scenario = join(tmp.path, 'overlap.yaml');
  await writeFile(
    scenario,
    'recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n  - mount\n  - sync\n  - drop-caches\nkill:\n  - after: mount\n  - after: sync\n  - after: drop-caches\n  - none\n',
  );
  const ends: number[] = [];
  const { summary } = await runSuite({
    inputs: [scenario],
    kernel,
    seed: 1,
    out: join(tmp.path, 'run'),
    machines: pool,
    snapshots: false,
    reporters: [{ name: 'ends', onCaseEnd: () => void ends.push(performance.now()) }],
  });
  t.same(
    summary.cases.map((c) => c.status),
    ['pass', 'pass', 'pass', 'pass'],
  );
  t.equal(casesInFlight(1), 2, 'two cases in flight for one slot');
  t.equal(pool.peak, 1, 'one machine at a time, as the budget says');
  const workloads = launches.filter((l) => l.role === 'workload').map((l) => l.at);
  t.equal(workloads.length, 4);
  // The second case's machine started before the first case was done: the
  // first was checking its crash image on the host meanwhile.
  t.ok(
    workloads[1]! < ends[0]!,
    `second machine at ${Math.round(workloads[1]!)} ms, first case done at ${Math.round(ends[0]!)} ms`,
  );
  t.ok(
    summary.cases.every((c) => c.phases?.queuedMs !== undefined),
    'every case records its slot wait',
  );
});

t.test('the bench samples the default mix systematically', async (t) => {
  const all = Array.from({ length: 50 }, (_, i) => (i < 5 ? 'a' : i < 35 ? 'k' : 'c') + i);
  const s = systematicSample(all, 10);
  t.equal(s.length, 10);
  t.same([...new Set(s.map((x) => x[0]))], ['a', 'k', 'c'], 'every stretch of the list is represented');
  t.equal(s.filter((x) => x[0] === 'k').length, 6, 'in proportion: 30 of 50 -> 6 of 10');
  t.same(systematicSample(all, 0), all);
  t.same(systematicSample(all, 99), all);
});
