import type { Step } from '../scenario/model.ts';
import type { QmpEvent } from './qmp-protocol.ts';
import { AgentTimeoutError, type AgentReply } from './agent.ts';
import type { Vm } from './vm.ts';

/**
 * Primitives for agent-timed crash points (before/after/delay/during); the
 * runner (harness/crash) decides which one a case uses. Every one of them
 * ends the VM with vm.kill(): `stop`, then `quit`.
 */
export interface KillAtStep {
  /** The SHUTDOWN event QEMU sent (undefined only if QEMU died without one). */
  shutdown: QmpEvent | undefined;
  /** Host milliseconds from the step's start marker to the stop (0 when it never started). */
  afterStartMs: number;
  /** Whether the agent had sent the start marker. */
  started: boolean;
  /** The step's result when it finished before the kill. */
  reply?: AgentReply;
}

export interface StepKillOptions {
  /** Seed for per-case content (background writers). */
  seed?: number;
  timeoutMs?: number;
}

/**
 * Kill exactly before a step: the agent announces it ("held") and waits for
 * a go that never comes. Every earlier step has been acknowledged, and this
 * one has not run at all.
 */
export async function killBeforeStep(vm: Vm, step: Step, opts: StepKillOptions = {}): Promise<KillAtStep> {
  const c = vm.agent.begin(step, { hold: true, ...(opts.seed !== undefined ? { seed: opts.seed } : {}) });
  await within(c.held, opts.timeoutMs ?? 120_000, `hold marker of step "${step.name}"`);
  return { shutdown: await vm.kill(), afterStartMs: 0, started: false };
}

/** Kill right after the agent acknowledged the step's completion. */
export async function killAfterStep(vm: Vm, step: Step, opts: StepKillOptions = {}): Promise<KillAtStep> {
  const c = vm.agent.begin(step, opts.seed !== undefined ? { seed: opts.seed } : {});
  const started = await within(c.started, opts.timeoutMs ?? 120_000, `start marker of step "${step.name}"`);
  const reply = await within(c.done, opts.timeoutMs ?? 120_000, `completion of step "${step.name}"`);
  const afterStartMs = performance.now() - started;
  return { shutdown: await vm.kill(), afterStartMs, started: true, reply };
}

/**
 * Kill `delayMs` after the step's start marker, finished or not. A `during`
 * point is this with a delay the caller draws from the host-side case seed
 * (a restored snapshot gives every case the same guest RNG).
 */
export async function killAfterStart(vm: Vm, step: Step, delayMs: number, opts: StepKillOptions = {}): Promise<KillAtStep> {
  const c = vm.agent.begin(step, opts.seed !== undefined ? { seed: opts.seed } : {});
  let reply: AgentReply | undefined;
  void c.done.then((r) => (reply = r), () => undefined);
  const started = await within(c.started, opts.timeoutMs ?? 120_000, `start marker of step "${step.name}"`);
  // Timers may fire a little early: wait until the delay has really passed.
  for (let left = delayMs; left > 0; left = delayMs - (performance.now() - started)) {
    await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(left))));
  }
  const afterStartMs = performance.now() - started;
  const shutdown = await vm.kill();
  return { shutdown, afterStartMs, started: true, ...(reply ? { reply } : {}) };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new AgentTimeoutError(what, ms)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
