import { stepTimeoutMs, type CrashPoint, type Step } from '../scenario/model.ts';
import type { Machine } from '../vm/machine/machine.ts';
import type { AgentReply } from '../vm/agent/client.ts';
import { InfraError } from '../util/errors.ts';
import { withTimeout } from '../util/timeout.ts';
import type { FiredPoint } from './crash-state.ts';
import type { StepRecord } from './expectations.ts';
import { stepCommand } from './step-command.ts';
import { strategyFor, type KernelPointDriver } from './points/index.ts';

export interface WorkloadOutcome {
  records: StepRecord[];
  /** How the VM ended: killed at the point, or shut down cleanly (no-kill cases). */
  ending: 'killed' | 'clean';
  fired: FiredPoint;
  /** False when the crash point never fired: the case is "not reached", never a pass. */
  reached: boolean;
}

export interface WorkloadOptions {
  kernelDriver?: KernelPointDriver;
  /** Bound on each step and each wait for a point (default 120 s). */
  stepTimeoutMs?: number;
}

export const defaultStepTimeoutMs = stepTimeoutMs;

/**
 * Drive the steps through the agent and end the machine where the crash
 * point says: the target step is handed to its kind's strategy
 * (harness/crash/points/), which decides when the kill comes; `none` runs
 * every step and powers off cleanly. A mount that fails in the guest is an
 * infrastructure error (nothing after it means anything).
 */
export async function runWorkload(machine: Machine, steps: readonly Step[], point: CrashPoint, caseSeed: number, opts: WorkloadOptions = {}): Promise<WorkloadOutcome> {
  // A write-log state is replayed from a log on the host, never driven to by a workload.
  if (point.kind === 'log') throw new InfraError(`runWorkload: ${point.state} is a write-log crash state, not a kill point`);
  const stepTimeoutMs = opts.stepTimeoutMs ?? defaultStepTimeoutMs;
  const records: StepRecord[] = [];
  const t0 = performance.now();
  const end = async (fired: FiredPoint, reached = true): Promise<WorkloadOutcome> => {
    const ev = await machine.kill();
    return { records, ending: 'killed', fired: { ...fired, ...(ev ? { shutdownEvent: ev } : {}) }, reached };
  };

  for (const step of steps) {
    const strategy = point.kind !== 'none' && point.step === step.name ? strategyFor(point) : undefined;
    if (strategy?.killBeforeSend) return end(strategy.killBeforeSend());

    const [cmd, args] = stepCommand(step, caseSeed);
    const sent = machine.agent.send(cmd, args, { hold: strategy?.hold ?? false });
    const record: StepRecord = { name: step.name, kind: step.kind };
    records.push(record);
    void sent.started.then((t) => (record.startedAtMs = t - t0), () => {});
    const finished = sent.done.then((r: AgentReply) => {
      record.exitCode = r.exitCode;
      record.output = r.output;
      record.durationMs = performance.now() - t0 - (record.startedAtMs ?? 0);
      return r;
    });
    finished.catch(() => {});

    if (strategy) {
      const r = await strategy.atTarget({ step, sent, finished }, { seed: caseSeed, stepTimeoutMs, ...(opts.kernelDriver ? { kernelDriver: opts.kernelDriver } : {}) });
      if ('fired' in r) return end(r.fired);
      // The step finished without the point firing: the workload never reached it.
      return end({ kind: 'not-reached', step: step.name, why: r.notReached }, false);
    }

    const reply = await withTimeout(finished, stepTimeoutMs, () => new InfraError(`step "${step.name}" did not finish within ${stepTimeoutMs / 1000} s`));
    if (step.kind === 'mount' && reply.exitCode !== 0) {
      throw new InfraError(`mount failed in the guest (exit ${reply.exitCode}): ${reply.output.trim()}`);
    }
  }

  if (point.kind !== 'none') return end({ kind: 'not-reached', step: point.step, why: `no step named "${point.step}" ran` }, false);
  const ev = await machine.powerOff();
  return { records, ending: 'clean', fired: { kind: 'none', ...(ev ? { shutdownEvent: ev } : {}) }, reached: true };
}
