import { seededFraction } from '../random.ts';
import { killAfterStart } from './delay.ts';
import type { PointResult, PointStrategy } from './strategy.ts';

/**
 * `during: {step, window_ms}`: a time in [0, window) after the step's start
 * marker, drawn from the host-side case seed (a restored snapshot gives
 * every case the same guest RNG, so the guest cannot be the source).
 */
export const windowPoint = (step: string, windowMs: number): PointStrategy => ({
  hold: false,
  async atTarget(target, ctx): Promise<PointResult> {
    const delay = Math.floor(seededFraction(ctx.seed, step) * windowMs);
    const atMs = await killAfterStart(target, ctx, delay);
    return { fired: { kind: 'during', step, atMs, windowMs } };
  },
});
