import { basename } from 'node:path';
import type { ValidateResult } from './model.ts';

type Counts = ValidateResult['baseline']['summary']['counts'];

/** One planted bug of `validate --mutants`: its patch file and what validating it alone found. */
export interface MutantOutcome {
  patch: string;
  result: Pick<ValidateResult, 'introduced' | 'flaky' | 'notJudged' | 'dir'> & {
    baseline: { kernel: { id: string }; summary: { counts: Counts }; dir: string };
  };
}

const notRun = (c: Counts) => c.error + c.notReached + c.notRun;

/**
 * The closing lines of `validate --mutants`: every planted bug, flagged or
 * MISSED, in one place after the per-patch reports (nine of them are a long
 * scroll). The shared baseline's own result comes first because a finding
 * the baseline already has cannot be introduced: a baseline that failed or
 * did not run a case weakens every verdict under it, and the line says so.
 */
export function mutantsSummary(outcomes: readonly MutantOutcome[]): string {
  if (!outcomes.length) return '';
  const flagged = outcomes.filter((o) => o.result.introduced.length > 0).length;
  const base = outcomes[0]!.result.baseline;
  const c = base.summary.counts;
  const out = [
    '',
    `Planted bugs: ${flagged} of ${outcomes.length} flagged, each patch alone against one baseline run`,
    `  baseline: ${base.kernel.id}, ${c.pass} passed, ${c.fail} failed, ${notRun(c)} not run/reached (${base.dir})`,
  ];
  if (c.fail || notRun(c))
    out.push(
      '  (a finding the baseline already has, or a case it did not judge, cannot count as introduced: fix the baseline first)',
    );
  for (const { patch, result: r } of outcomes) {
    const notes = [
      `${r.introduced.length} confirmed finding(s)`,
      `${r.flaky.length} flaky`,
      ...(r.notJudged.patched.length ? [`${r.notJudged.patched.length} case(s) not judged on the patched kernel`] : []),
    ];
    out.push(`  ${r.introduced.length ? 'flagged' : 'MISSED '}  ${basename(patch)}: ${notes.join(', ')}  (${r.dir})`);
  }
  return out.join('\n') + '\n';
}
