import { firedSummary, type CaseResult } from '../results/case.ts';
import type { Finding } from '../findings/finding.ts';

/**
 * The findings worth showing for a case: a failing case shows what made it
 * fail, any other case everything it saw (a pass shows the allowed leaks).
 */
export function shownFindings(r: CaseResult): Finding[] {
  return r.status !== 'pass' && r.failing.length ? r.failing : r.findings;
}

/** What the TAP formats put in a case's YAML block; plain data, so each format serializes it its own way. */
export function caseDiagnostics(r: CaseResult): Record<string, unknown> {
  const diag: Record<string, unknown> = {
    status: r.status,
    scenario: r.scenario,
    point: r.pointLabel,
    seed: r.seed,
    duration_ms: r.durationMs,
  };
  if (r.error) diag.error = r.error;
  if (r.fired) {
    const f = firedSummary(r.fired);
    diag.fired = {
      kind: f.kind,
      ...(f.atMs !== undefined ? { at_ms: Math.round(f.atMs) } : {}),
      ...(f.symbol ? { symbol: f.symbol } : {}),
      ...(f.hits ? { hits: f.hits } : {}),
    };
  }
  const shown = shownFindings(r);
  if (shown.length) {
    diag.findings = shown.map((f) => ({
      class: f.class,
      code: f.code,
      name: f.name,
      ...(f.recovery ? { recovery: f.recovery } : {}),
      ...(f.ino !== undefined ? { ino: f.ino } : {}),
      ...(f.block !== undefined ? { block: f.block } : {}),
      message: f.message,
    }));
  }
  return diag;
}

/** A case gets a diagnostics block when it did not pass or when it saw anything at all. */
export function hasDiagnostics(r: CaseResult): boolean {
  return r.status !== 'pass' || r.findings.length > 0;
}
