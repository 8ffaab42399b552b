import type { KillPoint } from '../../scenario/model.ts';
import { afterStep, beforeStep } from './step-marker.ts';
import { delayPoint } from './delay.ts';
import { windowPoint } from './window.ts';
import { kernelPoint } from './kernel-point.ts';
import { commitPoint } from './commit.ts';
import type { PointStrategy } from './strategy.ts';

export type { KernelPointDriver, PointStrategy } from './strategy.ts';

/** The strategy of a crash point that targets a step; `none` has none (the workload runs to a clean end). */
export function strategyFor(point: Exclude<KillPoint, { kind: 'none' }>): PointStrategy {
  switch (point.kind) {
    case 'before':
      return beforeStep(point.step);
    case 'after':
      return afterStep(point.step);
    case 'delay':
      return delayPoint(point.step, point.delayMs);
    case 'during':
      return windowPoint(point.step, point.windowMs);
    case 'kernel':
      return kernelPoint(point);
    case 'commit':
      return commitPoint(point);
  }
}
