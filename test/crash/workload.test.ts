import t from 'tap';
import { runWorkload } from '../../harness/crash/workload.ts';
import type { KernelPointDriver } from '../../harness/crash/points/index.ts';
import type { FiredPoint } from '../../harness/crash/crash-state.ts';
import type { CrashPoint, Step } from '../../harness/scenario/model.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { InfraError } from '../../harness/util/errors.ts';
import { seededFraction } from '../../harness/crash/random.ts';
import { FakeMachine, type FakeScript } from '../helpers/fake-machine.ts';

// The workload's kill logic for every kind of crash point, against a
// scripted machine whose steps take known times. (The same code against
// QEMU: test/vm/agent.test.ts, migrate.test.ts, pipeline.test.ts, and
// test/gdb/kernel-point.test.ts for the gdbstub driver.)
const spec = { role: 'test', kernel: {}, initrd: '', disk: { path: '/dev/null', format: 'raw' } } as unknown as MachineSpec;
const steps: Step[] = [
  { kind: 'mount', name: 'mount', options: [] },
  { kind: 'migrate', name: 'migrate', paths: ['/f'], recursive: false },
  { kind: 'sync', name: 'sync' },
];
/** migrate takes 300 ms, the rest 5 ms. */
const timed: FakeScript = (cmd) => (cmd === 'migrate' ? { ms: 300 } : {});
const machine = (script: FakeScript = timed) => new FakeMachine(spec, { script });

t.test('none: every step runs, then a clean power-off', async (t) => {
  const m = machine();
  const out = await runWorkload(m, steps, { kind: 'none' }, 1);
  t.equal(out.ending, 'clean');
  t.equal(out.reached, true);
  t.equal(out.fired.kind, 'none');
  t.same(
    out.records.map((r) => r.exitCode),
    [0, 0, 0],
  );
  t.equal(m.ended, 'powered-off');
});

t.test('before: the target step is never sent, every earlier one was acknowledged', async (t) => {
  const m = machine();
  const out = await runWorkload(m, steps, { kind: 'before', step: 'migrate' }, 1);
  t.same(m.commands, ['mount'], 'migrate never reached the agent');
  t.same(
    out.records.map((r) => [r.name, r.exitCode]),
    [['mount', 0]],
  );
  t.match(out.fired, { kind: 'before', step: 'migrate', atMs: 0, shutdownEvent: { event: 'SHUTDOWN' } });
  t.equal(m.ended, 'killed');
});

t.test('after: the kill comes once the step is acknowledged, and nothing after it is sent', async (t) => {
  const m = machine();
  const out = await runWorkload(m, steps, { kind: 'after', step: 'migrate' }, 1);
  t.same(m.commands, ['mount', 'migrate']);
  t.equal(out.records[1]?.exitCode, 0, 'migrate finished');
  const f = out.fired as Extract<FiredPoint, { kind: 'after' }>;
  t.equal(f.kind, 'after');
  t.ok(f.atMs >= 290, `killed ${Math.round(f.atMs)} ms after migrate's start marker (it runs 300 ms)`);
});

t.test('delay: the kill comes that long after the start marker, while the step still runs', async (t) => {
  const m = machine();
  const out = await runWorkload(m, steps, { kind: 'delay', step: 'migrate', delayMs: 100 }, 1);
  const f = out.fired as Extract<FiredPoint, { kind: 'delay' }>;
  // Not before the delay; how soon after it is the host's timer lag, which a loaded CI machine stretches.
  t.ok(f.atMs >= 100, `killed at ${Math.round(f.atMs)} ms`);
  t.equal(out.records[1]?.exitCode, undefined, 'migrate had not finished');
  t.equal(m.agent.seen[1]?.doneAt, undefined, 'and never finished: the machine died under it');
});

t.test('delay past the end of the step still kills at the delay, with nothing more sent', async (t) => {
  const m = machine();
  const out = await runWorkload(m, steps, { kind: 'delay', step: 'mount', delayMs: 150 }, 1);
  const f = out.fired as Extract<FiredPoint, { kind: 'delay' }>;
  t.ok(f.atMs >= 150, `killed at ${Math.round(f.atMs)} ms`);
  t.same(m.commands, ['mount'], 'the next step was not sent while waiting');
});

t.test('during: a seeded time inside the window, the same for the same seed', async (t) => {
  const point: CrashPoint = { kind: 'during', step: 'migrate', windowMs: 250 };
  const a = (await runWorkload(machine(), steps, point, 42)).fired as Extract<FiredPoint, { kind: 'during' }>;
  const b = (await runWorkload(machine(), steps, point, 42)).fired as Extract<FiredPoint, { kind: 'during' }>;
  const c = (await runWorkload(machine(), steps, point, 44)).fired as Extract<FiredPoint, { kind: 'during' }>;
  // The seed decides the time drawn (seed 42 draws 160 ms into the window,
  // seed 44 draws 2 ms); the kill comes no earlier than it. How much later
  // is the host's timer lag, which a loaded machine stretches past any gap
  // worth asserting (a 38 ms lag once put two draws in the same 10 ms).
  const drawn = (seed: number) => Math.floor(seededFraction(seed, 'migrate') * 250);
  t.equal(drawn(42), 160, 'seed 42 draws 160 ms');
  t.equal(drawn(44), 2, 'seed 44 draws 2 ms');
  t.ok(
    a.atMs >= drawn(42) && b.atMs >= drawn(42),
    `same seed, both killed at its time or after (${Math.round(a.atMs)}, ${Math.round(b.atMs)} ms)`,
  );
  t.ok(c.atMs >= drawn(44), `another seed, its own time (${Math.round(c.atMs)} ms)`);
  t.ok(
    a.atMs < 250 + 1000 && c.atMs < a.atMs,
    `inside the window give or take timer lag, seed 44 first (${Math.round(c.atMs)} < ${Math.round(a.atMs)} ms)`,
  );
});

/** A kernel-point driver that records its calls and fires (or not) as told. */
function fakeDriver(fire: FiredPoint | undefined, m: FakeMachine) {
  const calls: string[] = [];
  const driver: KernelPointDriver = {
    async arm(p) {
      // Armed while the agent holds the step: it has announced it and not started it.
      const target = m.agent.seen.at(-1)!;
      calls.push(`arm ${p.kind} held=${target.heldAt !== undefined} started=${target.startedAt !== undefined}`);
    },
    async wait(stepDone) {
      calls.push('wait');
      if (fire) return fire;
      await stepDone.catch(() => {});
      return undefined;
    },
    async disarm() {
      calls.push('disarm');
    },
  };
  return { driver, calls };
}

const kernelPoint: CrashPoint = {
  kind: 'kernel',
  step: 'migrate',
  symbol: 'ext4_ext_migrate',
  offset: 0,
  hit: 1,
  thenHits: 0,
  delayMs: 0,
};

t.test('kernel: armed while the step is held, then the kill at the stop', async (t) => {
  const m = machine();
  const { driver, calls } = fakeDriver(
    { kind: 'kernel', step: 'migrate', symbol: 'ext4_ext_migrate', hits: 1, rip: '0xffffffff81000000' },
    m,
  );
  const out = await runWorkload(m, steps, kernelPoint, 1, { kernelDriver: driver });
  t.same(calls, ['arm kernel held=true started=false', 'wait']);
  t.equal(m.agent.seen[1]?.hold, true, 'migrate was sent held');
  t.match(out.fired, { kind: 'kernel', symbol: 'ext4_ext_migrate' });
  t.equal(out.reached, true);
  t.equal(m.ended, 'killed');
});

t.test('kernel: a point the step finishes without is not reached, and the driver lets go', async (t) => {
  const m = machine();
  const { driver, calls } = fakeDriver(undefined, m);
  const out = await runWorkload(m, steps, { kind: 'commit', step: 'migrate', k: 3 }, 1, { kernelDriver: driver });
  t.same(calls, ['arm commit held=true started=false', 'wait', 'disarm']);
  t.equal(out.reached, false);
  t.match(out.fired, { kind: 'not-reached', step: 'migrate', why: /finished without the commit point firing/ });
  t.equal(out.records[1]?.exitCode, 0, 'the step did finish');
  t.same(m.commands, ['mount', 'migrate'], 'the workload stopped there');
});

t.test('kernel points without a driver are an infrastructure error', async (t) => {
  await t.rejects(runWorkload(machine(), steps, kernelPoint, 1), InfraError);
});

t.test('a mount that fails in the guest ends the workload with its output', async (t) => {
  const m = machine((cmd) => (cmd === 'mount' ? { exitCode: 32, output: 'mount: /mnt: wrong fs type' } : {}));
  await t.rejects(runWorkload(m, steps, { kind: 'after', step: 'sync' }, 1), {
    message: /mount failed in the guest \(exit 32\): mount: \/mnt: wrong fs type/,
  });
});

t.test('a step that never finishes is bounded by the step timeout', async (t) => {
  const m = machine((cmd) => (cmd === 'migrate' ? { hang: true } : {}));
  await t.rejects(runWorkload(m, steps, { kind: 'after', step: 'sync' }, 1, { stepTimeoutMs: 200 }), {
    message: /step "migrate" did not finish within 0.2 s/,
  });
  const m2 = machine((cmd) => (cmd === 'migrate' ? { hang: true } : {}));
  const { driver } = fakeDriver(undefined, m2);
  await t.rejects(
    runWorkload(m2, steps, kernelPoint, 1, { kernelDriver: driver, stepTimeoutMs: 200 }),
    { message: /waiting for the kernel point/ },
    'and so is a kernel point that neither fires nor lets the step end',
  );
});
