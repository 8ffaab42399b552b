import type { CrashPoint, Step } from '../../scenario/model.ts';
import type { AgentCommand, AgentReply } from '../../vm/agent/client.ts';
import type { FiredPoint } from '../crash-state.ts';

/** A kernel crash point's driver (the gdbstub in runs, a fake in tests). */
export interface KernelPointDriver {
  /** Called while the step is held at its start marker; arms the point. */
  arm(point: CrashPoint): Promise<void>;
  /** Resolves when the point fired and the guest is stopped, or undefined when `stepDone` settled first. */
  wait(stepDone: Promise<unknown>): Promise<FiredPoint | undefined>;
  /** The step finished first (a point not reached): let go of the guest; the VM is killed next. */
  disarm(): Promise<void>;
  readonly transcript?: string[];
}

/** The step a crash point targets, as the workload sent it. */
export interface TargetStep {
  step: Step;
  sent: AgentCommand;
  /** Settles with the step's reply; rejects when the VM dies under it. */
  finished: Promise<AgentReply>;
}

export interface PointContext {
  seed: number;
  /** Bound on any wait for the guest: a wedged guest must not hang the run. */
  stepTimeoutMs: number;
  kernelDriver?: KernelPointDriver;
}

export type PointResult = { fired: FiredPoint } | { notReached: string };

/**
 * How one kind of crash point decides when to kill, given its target step.
 * The workload (workload.ts) runs the steps, and at the target step hands
 * over to the strategy; every strategy ends with the workload killing the VM.
 */
export interface PointStrategy {
  /** Kill with every earlier step acknowledged and this one never sent: what fired then. */
  readonly killBeforeSend?: () => FiredPoint;
  /** Send the target step held at its start marker until the strategy says go. */
  readonly hold: boolean;
  atTarget(target: TargetStep, ctx: PointContext): Promise<PointResult>;
}
