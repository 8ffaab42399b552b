import { rm } from 'node:fs/promises';
import type { Step } from '../scenario/model.ts';
import type { Manifest } from '../image/manifest.ts';
import type { Recipe } from '../image/recipe.ts';
import { isAllowed, type Allowance, type Finding } from '../findings/finding.ts';
import { E2fsckCannotCheckError } from '../image/e2fsck.ts';
import { deriveExpectations, type DurabilityExpectations, type StepRecord } from '../crash/expectations.ts';
import { recordsAt, type AckPosition } from '../crash/writelog/record.ts';
import type { PlannedState } from '../crash/writelog/states.ts';
import { recoverWithE2fsck } from '../recovery/e2fsck.ts';
import { runOracles, type OracleOutcome } from '../checks/oracle.ts';
import { cannotCheckFinding } from '../checks/uncheckable.ts';
import type { FileOrigin } from '../checks/file-history.ts';

/**
 * The e2fsck recovery and its oracles (content, durability, -fn, -fy, -fn)
 * on a write-log crash state, with the durability expectations that hold at
 * the state's position: only the steps acknowledged by then count, exactly
 * as a kill case counts the steps acknowledged before its kill. Used to
 * check and to minimise states on the host (no VM per state).
 */
export interface StateOracleContext {
  manifest: Manifest;
  recipe?: Recipe;
  /** For a user's image: the original bytes of its files the workload writes into (image/user-image.ts). */
  imageFiles?: ReadonlyMap<string, FileOrigin>;
  steps: readonly Step[];
  /** The recorded run's step records (crash/writelog/record.ts). */
  records: readonly StepRecord[];
  acks: readonly AckPosition[];
  allow: Allowance;
  caseSeed?: number;
}

export interface StateVerdict {
  findings: Finding[];
  failing: Finding[];
  expectations: DurabilityExpectations;
  outcome: OracleOutcome;
}

export function expectationsAt(ctx: StateOracleContext, position: number): ReturnType<typeof deriveExpectations> {
  return deriveExpectations(
    ctx.steps,
    recordsAt(ctx.acks, ctx.records, position),
    ctx.manifest,
    false,
    ctx.caseSeed !== undefined ? { caseSeed: ctx.caseSeed } : {},
  );
}

/** Run the e2fsck recovery on a copy of `image` (at `workCopy`, removed afterwards) and judge the findings. */
export async function e2fsckVerdict(
  state: Pick<PlannedState, 'position'>,
  image: string,
  workCopy: string,
  ctx: StateOracleContext,
): Promise<StateVerdict> {
  const { expectations, migrated } = expectationsAt(ctx, state.position);
  try {
    let outcome: OracleOutcome;
    try {
      const recovered = await recoverWithE2fsck(image, workCopy);
      outcome = await runOracles(recovered, {
        manifest: ctx.manifest,
        migrated,
        expectations,
        ...(ctx.recipe ? { recipe: ctx.recipe } : {}),
        ...(ctx.imageFiles ? { imageFiles: ctx.imageFiles } : {}),
      });
    } catch (e) {
      // On a crash state an image e2fsck cannot check is the worst finding, not an error of the harness.
      if (!(e instanceof E2fsckCannotCheckError)) throw e;
      outcome = { findings: [cannotCheckFinding(e, 'e2fsck')], runs: [] };
    }
    return {
      findings: outcome.findings,
      failing: outcome.findings.filter((f) => !isAllowed(f, ctx.allow)),
      expectations,
      outcome,
    };
  } finally {
    await rm(workCopy, { force: true });
  }
}
