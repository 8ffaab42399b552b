import type { RunSummary } from '../results/run.ts';
import type { ValidateResult } from './model.ts';

/** How many lines of signatures, or scenario names, the block shows before it counts the rest. */
const named = 8;

function names(items: readonly string[], indent: string): string[] {
  const shown = items.slice(0, named).map((i) => `${indent}${i}`);
  return items.length > named ? [...shown, `${indent}... and ${items.length - named} more (see the full report)`] : shown;
}

/** Per suite, the scenarios' names when there are few ("known-bugs (2): chattr-eagain-lost, extent-len-32769-1k"), else how many ("default (31), limits (3)"). */
function scenarioLine(s: RunSummary): string {
  const bySuite = new Map<string, string[]>();
  for (const x of s.scenarios)
    bySuite.set(x.suite, [
      ...(bySuite.get(x.suite) ?? []),
      x.name.startsWith(`${x.suite}/`) ? x.name.slice(x.suite.length + 1) : x.name,
    ]);
  const few = s.scenarios.length <= named;
  return [...bySuite].map(([suite, n]) => `${suite} (${n.length})${few ? `: ${n.join(', ')}` : ''}`).join(', ');
}

/**
 * Signatures one line per scenario and crash point, with their codes:
 * "known-bugs/extent-len-65536-1k no-kill: ext4-error, not-durable". The
 * full signatures are in the report above the block.
 */
function byCase(signatures: readonly string[]): string[] {
  const m = new Map<string, string[]>();
  for (const s of signatures) {
    // formatSignature's order: scenario | point | recovery | class | code[ | title]
    const [scenario, point, , , code] = s.split(' | ');
    const key = `${scenario} ${point}`;
    m.set(key, [...(m.get(key) ?? []), code ?? s]);
  }
  return [...m].map(([k, codes]) => `${k}: ${[...new Set(codes)].join(', ')}`);
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
  const states =
    b.counts.total === p.counts.total
      ? `${p.counts.total} on each kernel`
      : `${b.counts.total} without the patch, ${p.counts.total} with it`;
  const out = [
    'qcrash validate (ext4 block-map to extent migration, chattr +e):',
    `  kernels: ${r.baseline.kernel.release} (${r.baseline.kernel.id}) without the patch, ${r.patched.kernel.release} (${r.patched.kernel.id}) with it`,
    `  scenarios: ${scenarioLine(p)}`,
    `  crash states checked: ${states}, seed ${p.seed}`,
    `  removed by the patch: ${r.removed.length || 'none'}`,
    ...names(byCase(r.removed), '    '),
    `  introduced by the patch: ${r.introduced.length || 'none'}`,
    ...names(byCase(r.introduced.map((v) => v.signature)), '    '),
  ];
  if (r.flaky.length)
    out.push(
      `  new but not on every rerun (flaky): ${r.flaky.length}`,
      ...names(byCase(r.flaky.map((v) => v.signature)), '    '),
    );
  if (r.unchanged.length) out.push(`  left as they were: ${r.unchanged.length}`);
  const notJudged = r.notJudged.baseline.length + r.notJudged.patched.length;
  if (notJudged)
    out.push(
      `  cases that judged nothing (error or not reached): ${r.notJudged.baseline.length} without the patch, ${r.notJudged.patched.length} with it`,
    );
  return out;
}
