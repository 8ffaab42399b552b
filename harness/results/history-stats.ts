import type { HistoryIndex, HistoryRun } from './history.ts';

/**
 * What a history index says across runs, in the spirit of xfstests-bld's
 * get_stats (per test: how often it failed) and diff_stats (what changed
 * between two result sets): per scenario its verdict in each run, per pair of
 * consecutive runs the failing signatures that appeared and went away, and
 * per signature how often it showed where it could have.
 */

interface ScenarioCell {
  runId: string;
  verdict: string;
  pass: number;
  total: number;
}

export interface ScenarioTimeline {
  scenario: string;
  /** One per run in index order; undefined where the run did not have the scenario. */
  cells: Array<ScenarioCell | undefined>;
}

export function scenarioTimelines(index: HistoryIndex): ScenarioTimeline[] {
  const names = [...new Set(index.runs.flatMap((r) => r.scenarios.map((s) => s.name)))].sort();
  return names.map((scenario) => ({
    scenario,
    cells: index.runs.map((r) => {
      const s = r.scenarios.find((x) => x.name === scenario);
      return s ? { runId: r.runId, verdict: s.verdict, pass: s.pass, total: s.total } : undefined;
    }),
  }));
}

function runSignatures(r: HistoryRun): Set<string> {
  return new Set(r.cases.flatMap((c) => c.failing));
}

/** "scenario | point" of a signature: which cases could show it. */
function signatureSlot(sig: string): string {
  return sig.split(' | ').slice(0, 2).join(' | ');
}

function runSlots(r: HistoryRun): Set<string> {
  // A case that errored or was not reached says nothing about its findings.
  return new Set(r.cases.filter((c) => c.status === 'pass' || c.status === 'fail').map((c) => `${c.scenario} | ${c.point}`));
}

export interface RunChange {
  from: string;
  to: string;
  /** Failing signatures in `to` and not in `from`, among cases both runs ran. */
  appeared: string[];
  /** In `from`, not in `to`, though `to` ran the case. */
  gone: string[];
  /** Cases whose status changed. */
  statusChanges: Array<{ id: string; from: string; to: string }>;
}

/** diff_stats between each run and the one before it. */
export function runChanges(index: HistoryIndex): RunChange[] {
  const out: RunChange[] = [];
  for (let i = 1; i < index.runs.length; i++) {
    const a = index.runs[i - 1]!;
    const b = index.runs[i]!;
    const sa = runSignatures(a);
    const sb = runSignatures(b);
    const slotsA = runSlots(a);
    const slotsB = runSlots(b);
    const before = new Map(a.cases.map((c) => [c.id, c.status]));
    out.push({
      from: a.runId,
      to: b.runId,
      appeared: [...sb].filter((s) => !sa.has(s) && slotsA.has(signatureSlot(s))).sort(),
      gone: [...sa].filter((s) => !sb.has(s) && slotsB.has(signatureSlot(s))).sort(),
      statusChanges: b.cases.filter((c) => before.has(c.id) && before.get(c.id) !== c.status).map((c) => ({ id: c.id, from: before.get(c.id)!, to: c.status })),
    });
  }
  return out;
}

type SignatureTrend = 'flaky' | 'every run since first seen' | 'gone';

export interface SignatureRate {
  signature: string;
  /** Runs that showed it. */
  seen: number;
  /** Runs that ran a case that could show it (same scenario and crash point, passed or failed). */
  ran: number;
  rate: number;
  firstSeen: string;
  lastSeen: string;
  /** Per run in index order: true seen, false ran and not seen, undefined not run. */
  pattern: Array<boolean | undefined>;
  /**
   * flaky: missing from a run (that ran its case) between two runs that
   * showed it; gone: missing from the runs after its last sighting;
   * otherwise it showed in every run since it first appeared.
   */
  trend: SignatureTrend;
}

/** get_stats: every failing signature with how often it showed where it could have. */
export function signatureRates(index: HistoryIndex): SignatureRate[] {
  const all = new Set(index.runs.flatMap((r) => [...runSignatures(r)]));
  const sigsPerRun = index.runs.map(runSignatures);
  const slotsPerRun = index.runs.map(runSlots);
  const out: SignatureRate[] = [];
  for (const signature of all) {
    const slot = signatureSlot(signature);
    const pattern = index.runs.map((_, i) => (sigsPerRun[i]!.has(signature) ? true : slotsPerRun[i]!.has(slot) ? false : undefined));
    const seenAt = pattern.flatMap((p, i) => (p === true ? [i] : []));
    const first = seenAt[0]!;
    const last = seenAt.at(-1)!;
    const gap = pattern.slice(first, last + 1).some((p) => p === false);
    const after = pattern.slice(last + 1).some((p) => p === false);
    const seen = seenAt.length;
    const ran = pattern.filter((p) => p !== undefined).length;
    out.push({
      signature,
      seen,
      ran,
      rate: ran ? seen / ran : 0,
      firstSeen: index.runs[first]!.runId,
      lastSeen: index.runs[last]!.runId,
      pattern,
      trend: gap ? 'flaky' : after ? 'gone' : 'every run since first seen',
    });
  }
  const rank: Record<SignatureTrend, number> = { flaky: 0, 'every run since first seen': 1, gone: 2 };
  return out.sort((a, b) => rank[a.trend] - rank[b.trend] || b.rate - a.rate || a.signature.localeCompare(b.signature));
}
