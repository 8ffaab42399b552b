import type { CrashPoint, Step } from '../scenario/model.ts';
import type { FiredPoint } from '../run/result.ts';
import type { Vm } from '../vm/vm.ts';
import { InfraError } from '../util/errors.ts';
import { stepCommand } from '../vm/agent-protocol.ts';
import type { StepRecord } from './expectations.ts';
import { seededFraction } from './random.ts';

export interface WorkloadOutcome {
  records: StepRecord[];
  /** How the VM ended: killed at the point, or shut down cleanly (no-kill cases). */
  ending: 'killed' | 'clean';
  fired?: FiredPoint;
  /** False when the crash point never fired: the case is "not reached", never a pass. */
  reached: boolean;
}

/** Optional hook for crash points the agent cannot time: kernel breakpoints through the gdbstub. */
export interface KernelPointDriver {
  /** Called while the step is held at its start marker; arms the point. */
  arm(point: CrashPoint): Promise<void>;
  /** Resolves when the point fired and the guest is stopped, or undefined when `stepDone` settled first. */
  wait(stepDone: Promise<unknown>): Promise<FiredPoint | undefined>;
  /** The step finished first (a point not reached): let go of the guest; the VM is killed next. */
  disarm(): Promise<void>;
  readonly transcript?: string[];
}

const stepTimeoutMs = 120_000;

/**
 * Drive the steps through the agent and kill the VM where the crash point
 * says. "before" kills with every earlier step acknowledged and this one not
 * sent; "after" kills right after its acknowledgement; delay/during kill
 * that long after the step's start marker, whether or not it finished.
 */
export async function runWorkload(vm: Vm, steps: readonly Step[], point: CrashPoint, caseSeed: number, kernelDriver?: KernelPointDriver): Promise<WorkloadOutcome> {
  const records: StepRecord[] = [];
  const t0 = performance.now();
  const kill = async (fired: FiredPoint): Promise<WorkloadOutcome> => {
    const ev = await vm.kill();
    return { records, ending: 'killed', fired: { ...fired, ...(ev ? { shutdownEvent: ev } : {}) }, reached: true };
  };

  for (const step of steps) {
    const isTarget = 'step' in point && point.step === step.name;
    if (isTarget && point.kind === 'before') return kill({ kind: 'marker', atMs: 0 });

    const [cmd, args] = stepCommand(step, caseSeed);
    const useKernel = isTarget && (point.kind === 'kernel' || point.kind === 'commit');
    if (useKernel && !kernelDriver) throw new InfraError(`crash point ${point.kind} needs the gdbstub driver`);
    const sent = vm.agent.send(cmd, args, { hold: useKernel });
    const record: StepRecord = { name: step.name, kind: step.kind };
    records.push(record);
    void sent.started.then((t) => (record.startedAtMs = t - t0));
    const finished = sent.done.then((r) => {
      record.exitCode = r.exitCode;
      record.output = r.output;
      record.durationMs = performance.now() - t0 - (record.startedAtMs ?? 0);
      return r;
    });
    finished.catch(() => {});

    if (useKernel) {
      await sent.held;
      await kernelDriver!.arm(point);
      sent.go();
      // A point that neither fires nor lets the step finish (a lost stop
      // reply, a wedged guest) must not hang the run: bound it like a step.
      const fired = await withTimeout(kernelDriver!.wait(finished), stepTimeoutMs, `${step.name} (waiting for ${point.kind} point)`);
      if (fired) return kill(fired);
      await kernelDriver!.disarm();
      await withTimeout(finished, stepTimeoutMs, step.name);
      // The step finished without the point firing: the workload never reached it.
      const ev = await vm.kill();
      return { records, ending: 'killed', fired: { kind: 'not-reached', ...(ev ? { shutdownEvent: ev } : {}) }, reached: false };
    }

    if (isTarget && (point.kind === 'delay' || point.kind === 'during')) {
      const started = await withTimeout(sent.started, stepTimeoutMs, step.name);
      const delay = point.kind === 'delay' ? point.delayMs : Math.floor(seededFraction(caseSeed, step.name) * point.windowMs);
      const wait = delay - (performance.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      return kill({ kind: 'marker', atMs: performance.now() - started });
    }

    const reply = await withTimeout(finished, stepTimeoutMs, step.name);
    if (isTarget && point.kind === 'after') return kill({ kind: 'marker', atMs: 0 });
    if (step.kind === 'mount' && reply.exitCode !== 0) {
      throw new InfraError(`mount failed in the guest (exit ${reply.exitCode}): ${reply.output.trim()}`);
    }
  }

  if (point.kind !== 'none') {
    const ev = await vm.kill();
    return { records, ending: 'killed', fired: { kind: 'not-reached', ...(ev ? { shutdownEvent: ev } : {}) }, reached: false };
  }
  const ev = await vm.powerOff();
  return { records, ending: 'clean', fired: { kind: 'none', ...(ev ? { shutdownEvent: ev } : {}) }, reached: true };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new InfraError(`step "${what}" did not finish within ${ms / 1000} s`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
