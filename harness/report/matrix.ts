import type { RunSummary } from '../results/run.ts';
import type { CaseStatus } from '../results/case.ts';
import { findingSignature } from '../results/signature.ts';

/** One kernel's run of a matrix run: its label (the --kernel spec), the run folder and its summary. */
export interface MatrixRun {
  label: string;
  dir: string;
  summary: RunSummary;
}

/** One scenario on one kernel: its cases' counts. */
interface MatrixCell {
  total: number;
  pass: number;
  fail: number;
  notJudged: number;
}

/** A failing finding signature and the kernels that showed it. */
interface MatrixFinding {
  signature: string;
  seenOn: string[];
  notOn: string[];
}

/** The kernel x scenario matrix of several runs of one suite (matrix.json). */
export interface Matrix {
  schema: 'qcrash-matrix/1';
  kernels: Array<{ label: string; id: string; release: string; line?: string; dir: string; runId: string }>;
  scenarios: string[];
  /** cells[scenario][kernel label]. */
  cells: Record<string, Record<string, MatrixCell>>;
  /** Failing signatures; `notOn` non-empty: seen on one line and not another. */
  findings: MatrixFinding[];
}

const counted: Record<CaseStatus, keyof MatrixCell> = {
  pass: 'pass',
  fail: 'fail',
  error: 'notJudged',
  'not-reached': 'notJudged',
  // A case an interrupted run never got to: not judged on that kernel.
  'not-run': 'notJudged',
};

export function buildMatrix(runs: readonly MatrixRun[]): Matrix {
  const scenarios = [...new Set(runs.flatMap((r) => r.summary.scenarios.map((s) => s.name)))];
  const cells: Matrix['cells'] = {};
  for (const name of scenarios) {
    cells[name] = {};
    for (const r of runs) {
      const cell: MatrixCell = { total: 0, pass: 0, fail: 0, notJudged: 0 };
      for (const c of r.summary.cases.filter((x) => x.scenario === name)) {
        cell.total++;
        cell[counted[c.status]]++;
      }
      cells[name][r.label] = cell;
    }
  }
  const seen = new Map<string, Set<string>>();
  for (const r of runs) {
    for (const c of r.summary.cases) {
      if (c.status === 'error' || c.status === 'not-reached') continue;
      for (const f of c.failing) {
        const k = findingSignature(c, f);
        seen.set(k, (seen.get(k) ?? new Set()).add(r.label));
      }
    }
  }
  const findings = [...seen]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([signature, on]) => ({
      signature,
      seenOn: runs.filter((r) => on.has(r.label)).map((r) => r.label),
      notOn: runs.filter((r) => !on.has(r.label)).map((r) => r.label),
    }));
  return {
    schema: 'qcrash-matrix/1',
    kernels: runs.map((r) => ({
      label: r.label,
      id: r.summary.kernel.id,
      release: r.summary.kernel.release,
      ...(r.summary.kernel.line ? { line: r.summary.kernel.line } : {}),
      dir: r.dir,
      runId: r.summary.runId,
    })),
    scenarios,
    cells,
    findings,
  };
}

function cellText(c: MatrixCell | undefined): string {
  if (!c || !c.total) return '-';
  if (c.fail) return `FAIL ${c.fail}/${c.total}`;
  if (c.notJudged) return `${c.pass}/${c.total} (${c.notJudged} not judged)`;
  return `pass ${c.pass}/${c.total}`;
}

/** The matrix as text: a row per scenario, a column per kernel, then the findings one line showed and another did not. */
export function matrixText(m: Matrix): string {
  const head = ['scenario', ...m.kernels.map((k) => k.label)];
  const rows = m.scenarios.map((s) => [s, ...m.kernels.map((k) => cellText(m.cells[s]?.[k.label]))]);
  const widths = head.map((_, i) => Math.max(...[head, ...rows].map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((x, i) => x.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const out = [
    'kernel x scenario matrix',
    ...m.kernels.map((k) => `  ${k.label}: ${k.release} (${k.id})${k.line ? `, line ${k.line}` : ''}, run ${k.dir}`),
    '',
    line(head),
    ...rows.map(line),
  ];
  const split = m.findings.filter((f) => f.notOn.length);
  const shared = m.findings.filter((f) => !f.notOn.length);
  if (split.length) {
    out.push('', 'findings seen on some kernels and not others:');
    for (const f of split) out.push(`  only on ${f.seenOn.join(', ')} (not on ${f.notOn.join(', ')}): ${f.signature}`);
  }
  if (shared.length) {
    out.push('', `findings on every kernel: ${shared.length}`);
    for (const f of shared) out.push(`  ${f.signature}`);
  }
  return out.join('\n') + '\n';
}
