import type { RunSummary } from '../results/run.ts';
import type { ValidateResult } from './model.ts';

/** How many signatures, or scenario names, the block names before it counts the rest. */
const named = 8;

function names(items: readonly string[], indent: string): string[] {
  const shown = items.slice(0, named).map((i) => `${indent}${i}`);
  return items.length > named ? [...shown, `${indent}... and ${items.length - named} more (see the full report)`] : shown;
}

/** The names of a few scenarios ("chattr-eagain-lost, extent-len-32769-1k"), or per suite how many ("default (31)"). */
function scenarioLine(s: RunSummary): string {
  if (s.scenarios.length <= named) return s.scenarios.map((x) => x.name).join(', ');
  const bySuite = new Map<string, number>();
  for (const x of s.scenarios) bySuite.set(x.suite, (bySuite.get(x.suite) ?? 0) + 1);
  return [...bySuite].map(([suite, n]) => `${suite} (${n})`).join(', ');
}

/**
 * The lines a patch author pastes under the patch's `---` line, where
 * git am drops them: which kernels and scenarios ran, how many crash
 * states were checked with which seed, and what the patch removed or
 * introduced. Kept to what a reviewer reads in a mail; the full report
 * stays in the results folder. None for a shard (no verdict of its own) or
 * an incomplete merge.
 */
export function pasteBlock(r: ValidateResult): string[] {
  if (r.shard || r.problems?.length) return [];
  const b = r.baseline.summary;
  const p = r.patched.summary;
  const states = b.counts.total === p.counts.total ? `${p.counts.total} on each kernel` : `${b.counts.total} without the patch, ${p.counts.total} with it`;
  const out = [
    'qcrash validate (ext4 block-map to extent migration, chattr +e):',
    `  kernels: ${r.baseline.kernel.release} (${r.baseline.kernel.id}) without the patch, ${r.patched.kernel.release} (${r.patched.kernel.id}) with it`,
    `  scenarios: ${scenarioLine(p)}`,
    `  crash states checked: ${states}, seed ${p.seed}`,
    `  removed by the patch: ${r.removed.length || 'none'}`,
    ...names(r.removed, '    '),
    `  introduced by the patch: ${r.introduced.length || 'none'}`,
    ...names(r.introduced.map((v) => v.signature), '    '),
  ];
  if (r.flaky.length) out.push(`  new but not on every rerun (flaky): ${r.flaky.length}`, ...names(r.flaky.map((v) => `${v.signature} (${v.confirmed}/${v.reruns})`), '    '));
  if (r.unchanged.length) out.push(`  left as they were: ${r.unchanged.length}`);
  const notJudged = r.notJudged.baseline.length + r.notJudged.patched.length;
  if (notJudged) out.push(`  cases that judged nothing (error or not reached): ${r.notJudged.baseline.length} without the patch, ${r.notJudged.patched.length} with it`);
  return out;
}
