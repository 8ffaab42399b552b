import { stringify } from 'yaml';
import { firedSummary, type CaseResult } from '../results/case.ts';
import type { RunSummary } from '../results/run.ts';
import type { Reporter } from './reporter.ts';

/** TAP 14 for one case: errors and not-reached cases are `not ok`, never skipped. */
export function tapCase(n: number, r: CaseResult): string {
  const ok = r.status === 'pass';
  const lines = [`${ok ? 'ok' : 'not ok'} ${n} - ${r.id}`];
  const diag: Record<string, unknown> = { status: r.status, scenario: r.scenario, point: r.pointLabel, seed: r.seed, duration_ms: r.durationMs };
  if (r.error) diag.error = r.error;
  if (r.fired) {
    const f = firedSummary(r.fired);
    diag.fired = { kind: f.kind, ...(f.atMs !== undefined ? { at_ms: Math.round(f.atMs) } : {}), ...(f.symbol ? { symbol: f.symbol } : {}), ...(f.hits ? { hits: f.hits } : {}) };
  }
  const shown = ok ? r.findings : r.failing.length ? r.failing : r.findings;
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
  if (!ok || shown.length) {
    lines.push('  ---');
    lines.push(...stringify(diag, { lineWidth: 0 }).trimEnd().split('\n').map((l) => `  ${l}`));
    lines.push('  ...');
  }
  return lines.join('\n') + '\n';
}

export function tapDocument(s: RunSummary): string {
  return ['TAP version 14', `1..${s.cases.length}`, ...s.cases.map((c, i) => tapCase(i + 1, c).trimEnd()), ''].join('\n');
}

/** Streams TAP to a writable as cases finish (completion order), plan first. */
export class TapReporter implements Reporter {
  readonly name = 'tap';
  private n = 0;
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}
  onRunStart(_meta: unknown, total: number) {
    this.out.write(`TAP version 14\n1..${total}\n`);
  }
  onCaseEnd(r: CaseResult) {
    this.out.write(tapCase(++this.n, r));
  }
}
