import { stepTimeoutMs, type CrashPoint, type HoldPoint, type Step } from '../scenario/model.ts';
import type { Machine } from '../vm/machine/machine.ts';
import type { AgentReply } from '../vm/agent/client.ts';
import { InfraError } from '../util/errors.ts';
import { withTimeout } from '../util/timeout.ts';
import type { FiredPoint, HeldInterleaving } from './crash-state.ts';
import type { StepRecord } from './expectations.ts';
import { stepCommand } from './step-command.ts';
import { strategyFor, type KernelPointDriver } from './points/index.ts';
import type { HoldDriver } from './points/hold.ts';

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
  /** An interleaving held at a kernel point (points/hold.ts); what ran during it is kept in `fired.held`. */
  hold?: { point: HoldPoint; driver: HoldDriver };
}

const defaultStepTimeoutMs = stepTimeoutMs;

/**
 * Drive the steps through the agent and end the machine where the crash
 * point says: the target step is handed to its kind's strategy
 * (harness/crash/points/), which decides when the kill comes; `none` runs
 * every step and powers off cleanly. A mount that fails in the guest is an
 * infrastructure error (nothing after it means anything).
 */
export async function runWorkload(
  machine: Machine,
  steps: readonly Step[],
  point: CrashPoint,
  caseSeed: number,
  opts: WorkloadOptions = {},
): Promise<WorkloadOutcome> {
  // A write-log state is replayed from a log on the host, never driven to by a workload.
  if (point.kind === 'log') throw new InfraError(`runWorkload: ${point.state} is a write-log crash state, not a kill point`);
  const stepTimeoutMs = opts.stepTimeoutMs ?? defaultStepTimeoutMs;
  const records: StepRecord[] = [];
  const t0 = performance.now();
  // The hold runs beside the steps from its step on; its record joins what fired.
  let holding: Promise<HeldInterleaving | undefined> | undefined;
  const heldRecord = async (): Promise<{ held?: HeldInterleaving }> => {
    const h = await holding;
    return h ? { held: h } : {};
  };
  const end = async (fired: FiredPoint, reached = true): Promise<WorkloadOutcome> => {
    const ev = await machine.kill();
    return {
      records,
      ending: 'killed',
      fired: { ...fired, ...(ev ? { shutdownEvent: ev } : {}), ...(await heldRecord()) },
      reached,
    };
  };

  for (const step of steps) {
    const strategy = point.kind !== 'none' && point.step === step.name ? strategyFor(point) : undefined;
    if (strategy?.killBeforeSend) return end(strategy.killBeforeSend());

    const hold = opts.hold && opts.hold.point.step === step.name ? opts.hold : undefined;
    if (hold && strategy?.hold)
      throw new InfraError(
        `step "${step.name}": the hold point and the ${point.kind} point both need the gdbstub; put the kill point on another step`,
      );
    const { sent, finished } = sendStep(machine, step, caseSeed, {
      hold: (strategy?.hold ?? false) || hold !== undefined,
      reportStores: opts.hold?.point.until?.marker === 'stores',
      t0,
      records,
    });

    if (hold) ({ holding } = await startHold(sent, finished, hold, step.name, stepTimeoutMs));

    if (strategy) {
      const r = await strategy.atTarget(
        { step, sent, finished },
        { seed: caseSeed, stepTimeoutMs, ...(opts.kernelDriver ? { kernelDriver: opts.kernelDriver } : {}) },
      );
      if ('fired' in r) return end(r.fired);
      // The step finished without the point firing: the workload never reached it.
      return end({ kind: 'not-reached', step: step.name, why: r.notReached }, false);
    }

    const reply = await withTimeout(
      finished,
      stepTimeoutMs,
      () => new InfraError(`step "${step.name}" did not finish within ${stepTimeoutMs / 1000} s`),
    );
    if (hold) await holding;
    if (step.kind === 'mount' && reply.exitCode !== 0) {
      throw new InfraError(`mount failed in the guest (exit ${reply.exitCode}): ${reply.output.trim()}`);
    }
  }

  if (point.kind !== 'none')
    return end({ kind: 'not-reached', step: point.step, why: `no step named "${point.step}" ran` }, false);
  const ev = await machine.powerOff();
  return {
    records,
    ending: 'clean',
    fired: { kind: 'none', ...(ev ? { shutdownEvent: ev } : {}), ...(await heldRecord()) },
    reached: true,
  };
}

/** Send one step to the agent, recording when it started, how it ended and what it said. */
function sendStep(
  machine: Machine,
  step: Step,
  caseSeed: number,
  o: { hold: boolean; reportStores: boolean; t0: number; records: StepRecord[] },
): { sent: ReturnType<Machine['agent']['send']>; finished: Promise<AgentReply> } {
  const [cmd, args] = stepCommand(step, caseSeed);
  // A hold that waits for writer stores has the writers report them on the console.
  const progress = o.reportStores && step.kind === 'writer' && step.action === 'start' ? { progress: 1 } : {};
  const sent = machine.agent.send(cmd, args, { hold: o.hold, ...(step.cpu !== undefined ? { cpu: step.cpu } : {}), ...progress });
  const record: StepRecord = { name: step.name, kind: step.kind };
  o.records.push(record);
  void sent.started.then(
    (t) => (record.startedAtMs = t - o.t0),
    () => {},
  );
  const finished = sent.done.then((r: AgentReply) => {
    record.exitCode = r.exitCode;
    record.output = r.output;
    record.durationMs = performance.now() - o.t0 - (record.startedAtMs ?? 0);
    return r;
  });
  finished.catch(() => {});
  return { sent, finished };
}

/**
 * Arm the hold while the agent holds its step at the start marker, let the
 * step go, and follow the hold beside it: the promise of what the hold did.
 */
async function startHold(
  sent: ReturnType<Machine['agent']['send']>,
  finished: Promise<AgentReply>,
  hold: NonNullable<WorkloadOptions['hold']>,
  stepName: string,
  stepTimeoutMs: number,
): Promise<{ holding: Promise<HeldInterleaving | undefined> }> {
  await withTimeout(
    sent.held,
    stepTimeoutMs,
    () => new InfraError(`step "${stepName}" was not held within ${stepTimeoutMs / 1000} s`),
  );
  await hold.driver.arm(hold.point);
  sent.go();
  // Bounded like a step: the driver's own limit ends the hold, this only catches a driver that never returns.
  const holding = withTimeout(
    hold.driver.run(finished),
    stepTimeoutMs,
    () => new InfraError(`step "${stepName}": the hold did not end within ${stepTimeoutMs / 1000} s`),
  );
  holding.catch(() => {});
  return { holding };
}
