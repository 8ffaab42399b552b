import type { CrashPoint } from '../../scenario/model.ts';
import { InfraError } from '../../util/errors.ts';
import { withTimeout } from '../../util/timeout.ts';
import type { PointResult, PointStrategy } from './strategy.ts';

/**
 * A point the agent cannot time, fired by the kernel driver (gdbstub): the
 * step is held at its start marker while the point is armed, then let go.
 * Shared by kernel-symbol points and commit points (commit.ts).
 */
export function driverPoint(point: Extract<CrashPoint, { kind: 'kernel' | 'commit' }>): PointStrategy {
  return {
    hold: true,
    async atTarget(target, ctx): Promise<PointResult> {
      const driver = ctx.kernelDriver;
      if (!driver) throw new InfraError(`crash point ${point.kind} needs the gdbstub driver`);
      await withTimeout(
        target.sent.held,
        ctx.stepTimeoutMs,
        () => new InfraError(`step "${target.step.name}" was not held within ${ctx.stepTimeoutMs / 1000} s`),
      );
      await driver.arm(point);
      target.sent.go();
      // A point that neither fires nor lets the step finish (a lost stop
      // reply, a wedged guest) must not hang the run: bound it like a step.
      const fired = await withTimeout(
        driver.wait(target.finished),
        ctx.stepTimeoutMs,
        () =>
          new InfraError(
            `step "${target.step.name}" (waiting for the ${point.kind} point) did not finish within ${ctx.stepTimeoutMs / 1000} s`,
          ),
      );
      if (fired) return { fired };
      await driver.disarm();
      await withTimeout(
        target.finished,
        ctx.stepTimeoutMs,
        () => new InfraError(`step "${target.step.name}" did not finish within ${ctx.stepTimeoutMs / 1000} s`),
      );
      return { notReached: `step "${target.step.name}" finished without the ${point.kind} point firing` };
    },
  };
}

/** `kernel: {step, symbol, hit, ...}`: stop at the N-th call of a kernel function inside the step. */
export const kernelPoint = (point: Extract<CrashPoint, { kind: 'kernel' }>): PointStrategy => driverPoint(point);
