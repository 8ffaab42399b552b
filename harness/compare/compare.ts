import type { CaseResult, CaseStatus } from '../results/case.ts';
import type { RunSummary } from '../results/run.ts';
import { findingSignature } from '../results/signature.ts';
import { logUnitIdOf } from '../scenario/model.ts';

export interface Comparison {
  a: string;
  b: string;
  /** Finding signatures in B and not in A (regressions). */
  added: string[];
  /** In A and not in B (fixed, or not triggered this time). */
  gone: string[];
  unchanged: string[];
  /** Cases whose status changed, e.g. pass -> fail. */
  statusChanges: Array<{ id: string; from: CaseStatus; to: CaseStatus }>;
  /** Cases that got worse: a pass (or not-reached) that failed or errored, a failure that became an error. */
  worse: Array<{ id: string; from: CaseStatus; to: CaseStatus }>;
  /** Cases that ran and now did not reach their crash point: coverage lost, not a finding. */
  lostCoverage: Array<{ id: string; from: CaseStatus }>;
  /** Cases of A that B does not have at all (a write log's states count as their unit, `<scenario>/log/r<rep>`). */
  onlyInA: string[];
  onlyInB: string[];
}

/** How bad a status is, for "got worse": a failure and an error both mean the newer run is not as good. */
const badness: Record<CaseStatus, number> = { pass: 0, 'not-reached': 1, fail: 2, error: 2 };

function signatures(s: RunSummary, failingOnly: boolean): Set<string> {
  const out = new Set<string>();
  for (const c of s.cases) for (const f of failingOnly ? c.failing : c.findings) out.add(findingSignature(c, f));
  return out;
}

/** How bad a status is when several cases stand for one (the states of a recorded log). */
const worstFirst: Record<CaseStatus, number> = { pass: 0, 'not-reached': 1, error: 2, fail: 3 };

/**
 * Cases by what is comparable across runs: a kill case by its id; the
 * crash states of a recorded write log by their unit (`<scenario>/log/r<rep>`),
 * with the worst status among them. Another kernel (or the same one another
 * day) writes another log, so the states of two runs' logs need not share
 * names: their findings compare by signature, their coverage by unit.
 */
function comparable(s: RunSummary): Map<string, { id: string; status: CaseStatus }> {
  const m = new Map<string, { id: string; status: CaseStatus }>();
  for (const c of s.cases) {
    const key = unitOf(c) ?? c.id;
    const prev = m.get(key);
    if (!prev || worstFirst[c.status] > worstFirst[prev.status]) m.set(key, { id: key, status: c.status });
  }
  return m;
}

function unitOf(c: Pick<CaseResult, 'id' | 'fired'>): string | undefined {
  return c.fired?.kind === 'log' ? c.fired.unit : logUnitIdOf(c.id);
}

/** Compare two runs by finding signature and by case; `failingOnly` ignores allowed findings (leaks) by default. */
export function compareRuns(a: RunSummary, b: RunSummary, opts: { failingOnly?: boolean } = {}): Comparison {
  const failingOnly = opts.failingOnly ?? true;
  const sa = signatures(a, failingOnly);
  const sb = signatures(b, failingOnly);
  const casesA = comparable(a);
  const casesB = comparable(b);
  const changes = [...casesB.values()]
    .filter((c) => casesA.has(c.id) && casesA.get(c.id)!.status !== c.status)
    .map((c) => ({ id: c.id, from: casesA.get(c.id)!.status, to: c.status }));
  return {
    a: a.runId,
    b: b.runId,
    added: [...sb].filter((x) => !sa.has(x)).sort(),
    gone: [...sa].filter((x) => !sb.has(x)).sort(),
    unchanged: [...sa].filter((x) => sb.has(x)).sort(),
    statusChanges: changes,
    worse: changes.filter(
      (c) => (c.to !== 'not-reached' && badness[c.to] > badness[c.from]) || (c.from === 'fail' && c.to === 'error'),
    ),
    lostCoverage: changes.filter((c) => c.to === 'not-reached').map(({ id, from }) => ({ id, from })),
    onlyInA: [...casesA.keys()].filter((k) => !casesB.has(k)).sort(),
    onlyInB: [...casesB.keys()].filter((k) => !casesA.has(k)).sort(),
  };
}

/**
 * The nightly verdict: 1 when B has new failing findings, a case got worse,
 * or a case of A is missing from B; with `strict`, lost coverage too.
 */
export function comparisonExitCode(c: Comparison, strict = false): 0 | 1 {
  if (c.added.length || c.worse.length || c.onlyInA.length) return 1;
  if (strict && c.lostCoverage.length) return 1;
  return 0;
}

export function formatComparison(c: Comparison): string {
  const out = [`qcrash compare ${c.a} -> ${c.b}`, `(signature: scenario | crash point | recovery | class | code[ | title])`, ''];
  const section = (title: string, items: string[]) => {
    out.push(`${title}: ${items.length}`);
    for (const i of items) out.push(`  ${i}`);
  };
  section('NEW findings', c.added);
  section('GONE findings', c.gone);
  section('unchanged findings', c.unchanged);
  if (c.worse.length)
    section(
      'WORSE cases',
      c.worse.map((s) => `${s.id}: ${s.from} -> ${s.to}`),
    );
  if (c.onlyInA.length) section(`MISSING cases (in ${c.a}, not in ${c.b})`, c.onlyInA);
  if (c.lostCoverage.length)
    section(
      'lost coverage (crash point not reached)',
      c.lostCoverage.map((s) => `${s.id}: ${s.from} -> not-reached`),
    );
  if (c.statusChanges.length)
    section(
      'status changes',
      c.statusChanges.map((s) => `${s.id}: ${s.from} -> ${s.to}`),
    );
  if (c.onlyInB.length) section(`cases only in ${c.b}`, c.onlyInB);
  return out.join('\n') + '\n';
}
