import { sleepAtLeast, withTimeout } from '../../util/timeout.ts';
import { InfraError } from '../../util/errors.ts';
import type { PointContext, PointResult, PointStrategy, TargetStep } from './strategy.ts';

/**
 * Kill `delayMs` after the step's start marker, whether or not the step has
 * finished by then. Shared by the fixed delay and the seeded window.
 */
export async function killAfterStart(target: TargetStep, ctx: PointContext, delayMs: number): Promise<number> {
  const started = await withTimeout(
    target.sent.started,
    ctx.stepTimeoutMs,
    () => new InfraError(`step "${target.step.name}" did not start within ${ctx.stepTimeoutMs / 1000} s`),
  );
  await sleepAtLeast(delayMs - (performance.now() - started));
  return performance.now() - started;
}

/** `delay: {step, ms}`: a fixed time into the step. */
export const delayPoint = (step: string, delayMs: number): PointStrategy => ({
  hold: false,
  async atTarget(target, ctx): Promise<PointResult> {
    const atMs = await killAfterStart(target, ctx, delayMs);
    return { fired: { kind: 'delay', step, atMs, delayMs } };
  },
});
