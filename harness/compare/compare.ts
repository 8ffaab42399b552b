import type { RunSummary } from '../results/run.ts';
import { findingSignature } from '../results/signature.ts';

export interface Comparison {
  a: string;
  b: string;
  /** Finding signatures in B and not in A (regressions). */
  added: string[];
  /** In A and not in B (fixed, or not triggered this time). */
  gone: string[];
  unchanged: string[];
  /** Cases whose status changed, e.g. pass -> fail. */
  statusChanges: Array<{ id: string; from: string; to: string }>;
  onlyInA: string[];
  onlyInB: string[];
}

function signatures(s: RunSummary, failingOnly: boolean): Set<string> {
  const out = new Set<string>();
  for (const c of s.cases) for (const f of failingOnly ? c.failing : c.findings) out.add(findingSignature(c, f));
  return out;
}

/** Compare two runs by finding signature; `failingOnly` ignores allowed findings (leaks) by default. */
export function compareRuns(a: RunSummary, b: RunSummary, opts: { failingOnly?: boolean } = {}): Comparison {
  const failingOnly = opts.failingOnly ?? true;
  const sa = signatures(a, failingOnly);
  const sb = signatures(b, failingOnly);
  const casesA = new Map(a.cases.map((c) => [c.id, c]));
  const casesB = new Map(b.cases.map((c) => [c.id, c]));
  return {
    a: a.runId,
    b: b.runId,
    added: [...sb].filter((x) => !sa.has(x)).sort(),
    gone: [...sa].filter((x) => !sb.has(x)).sort(),
    unchanged: [...sa].filter((x) => sb.has(x)).sort(),
    statusChanges: [...casesB.values()]
      .filter((c) => casesA.has(c.id) && casesA.get(c.id)!.status !== c.status)
      .map((c) => ({ id: c.id, from: casesA.get(c.id)!.status, to: c.status })),
    onlyInA: [...casesA.keys()].filter((k) => !casesB.has(k)).sort(),
    onlyInB: [...casesB.keys()].filter((k) => !casesA.has(k)).sort(),
  };
}

export function formatComparison(c: Comparison): string {
  const out = [`qcrash compare ${c.a} -> ${c.b}`, `(signature: scenario | crash point | recovery | class | code)`, ''];
  const section = (title: string, items: string[]) => {
    out.push(`${title}: ${items.length}`);
    for (const i of items) out.push(`  ${i}`);
  };
  section('NEW findings', c.added);
  section('GONE findings', c.gone);
  section('unchanged findings', c.unchanged);
  if (c.statusChanges.length) section('status changes', c.statusChanges.map((s) => `${s.id}: ${s.from} -> ${s.to}`));
  if (c.onlyInA.length) section(`cases only in ${c.a}`, c.onlyInA);
  if (c.onlyInB.length) section(`cases only in ${c.b}`, c.onlyInB);
  return out.join('\n') + '\n';
}
