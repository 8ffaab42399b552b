import { rm } from 'node:fs/promises';
import type { Step } from '../../scenario/model.ts';
import type { Manifest } from '../../image/manifest.ts';
import { isAllowed, type Allowance, type Finding } from '../../findings/finding.ts';
import { recoverWithE2fsck, type RecoveryOutcome } from '../../recovery/e2fsck.ts';
import { deriveExpectations, type StepRecord } from '../expectations.ts';
import type { DurabilityExpectations } from '../../checks/content.ts';
import { recordsAt, type AckPosition } from './record.ts';
import { InfraError } from '../../util/errors.ts';
import type { CrashState } from './states.ts';

/**
 * The e2fsck recovery and its oracles (content, durability, -fn, -fy, -fn)
 * on a crash-state image, with the durability expectations that hold at the
 * state's position: only the steps acknowledged by then count, exactly as a
 * kill case counts the steps acknowledged before its kill.
 */
export interface StateOracleContext {
  manifest: Manifest;
  steps: readonly Step[];
  /** The recorded run's step records (record.ts). */
  records: readonly StepRecord[];
  acks: readonly AckPosition[];
  allow: Allowance;
}

export interface StateVerdict {
  findings: Finding[];
  failing: Finding[];
  expectations: DurabilityExpectations;
  outcome: RecoveryOutcome;
}

export function expectationsAt(ctx: StateOracleContext, position: number): { expectations: DurabilityExpectations; migratedPaths: string[] } {
  return deriveExpectations(ctx.steps, recordsAt(ctx.acks, ctx.records, position), ctx.manifest, false);
}

/** Run the e2fsck recovery on a copy of `image` (at `workCopy`, removed afterwards) and judge the findings. */
export async function e2fsckVerdict(state: Pick<CrashState, 'position'>, image: string, workCopy: string, ctx: StateOracleContext): Promise<StateVerdict> {
  const { expectations, migratedPaths } = expectationsAt(ctx, state.position);
  try {
    let outcome: RecoveryOutcome;
    try {
      outcome = await recoverWithE2fsck(image, workCopy, { manifest: ctx.manifest, migratedPaths, expectations });
    } catch (e) {
      // runE2fsck throws when e2fsck cannot even check the image (exit 8: e.g. a group
      // descriptor the journal replay overwrote). On a crash state that is the worst finding, not an error of the harness.
      if (!(e instanceof InfraError) || !/^e2fsck .* could not check the image/.test(e.message)) throw e;
      const finding: Finding = {
        class: 'corruption',
        source: 'e2fsck',
        code: 'e2fsck-cannot-check',
        name: 'e2fsck-cannot-check',
        message: 'e2fsck could not check the recovered image',
        recovery: 'e2fsck',
        detail: e.message.slice(0, 4000),
      };
      outcome = { mode: 'e2fsck', findings: [finding], runs: [] };
    }
    return { findings: outcome.findings, failing: outcome.findings.filter((f) => !isAllowed(f, ctx.allow)), expectations, outcome };
  } finally {
    await rm(workCopy, { force: true });
  }
}
