import { withTimeout } from '../../util/timeout.ts';
import { InfraError } from '../../util/errors.ts';
import type { PointStrategy } from './strategy.ts';

/**
 * `before: STEP`: the kill comes with every earlier step acknowledged and
 * this one not sent at all.
 */
export const beforeStep = (step: string): PointStrategy => ({
  killBeforeSend: () => ({ kind: 'before', step, atMs: 0 }),
  hold: false,
  atTarget: async () => ({ fired: { kind: 'before', step, atMs: 0 } }),
});

/** `after: STEP`: the kill comes right after the agent acknowledged the step. */
export const afterStep = (step: string): PointStrategy => ({
  hold: false,
  async atTarget(target, ctx) {
    const started = await withTimeout(
      target.sent.started,
      ctx.stepTimeoutMs,
      () => new InfraError(`step "${step}" did not start within ${ctx.stepTimeoutMs / 1000} s`),
    );
    await withTimeout(
      target.finished,
      ctx.stepTimeoutMs,
      () => new InfraError(`step "${step}" did not finish within ${ctx.stepTimeoutMs / 1000} s`),
    );
    return { fired: { kind: 'after', step, atMs: performance.now() - started } };
  },
});
