import type { CrashPoint } from '../../scenario/model.ts';
import { driverPoint } from './kernel-point.ts';
import type { PointStrategy } from './strategy.ts';

/**
 * `commit: {step, k}`: kill right after the k-th jbd2 commit that completes
 * inside the step. A crash inside an open handle only exposes the last
 * committed transaction, so the ends of commits are the states worth testing.
 */
export const commitPoint = (point: Extract<CrashPoint, { kind: 'commit' }>): PointStrategy => driverPoint(point);
