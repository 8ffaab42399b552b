import type { CaseSpec } from '../scenario/model.ts';
import type { CaseResult } from '../results/case.ts';
import type { RunSummary } from '../results/run.ts';
import type { RunMeta } from '../results/run.ts';
import type { Reporter } from './reporter.ts';
import { shownFindings } from './case-diagnostics.ts';
import type { Finding } from '../findings/finding.ts';

/**
 * KTAP version 1 (Documentation/dev-tools/ktap.rst), as kunit.py's
 * kunit_parser.py and KernelCI read it: the run is one test whose subtests
 * are the scenarios, and each scenario's subtests are its cases. A nested
 * test is indented two spaces and starts with its own version line and plan;
 * "# Subtest: <name>" (what KUnit prints) names it before its cases, and
 * its result line after them. Diagnostics are "# " lines before a result
 * line (KTAP does not recommend YAML). A case that errored or whose crash
 * point was not reached is `not ok ... # ERROR <why>`: never ok, never SKIP.
 */

/**
 * kunit_parser stops reading at any line containing one of these phrases
 * (the end of a kernel's test output on a console), diagnostics included: a
 * finding that quotes a console ("Kernel panic - not syncing: VFS: Unable to
 * mount root fs") would cut the report short. Each match needs its colon.
 */
function breakConsoleEndMarkers(s: string): string {
  return s
    .replace(/List of all partitions:/g, 'List of all partitions -')
    .replace(/not syncing: VFS:/g, 'not syncing - VFS:')
    .replace(/reboot: System halted/g, 'reboot - System halted');
}

/** One line of diagnostic text, safe inside KTAP. */
export function ktapText(s: string): string {
  return breakConsoleEndMarkers(s.replace(/[\r\n\t]+/g, ' ').replace(/[\u0000-\u001f\u007f]/g, ''));
}

/** A test name: KTAP names cannot contain "#" (it starts a directive). */
export function ktapName(s: string): string {
  return ktapText(s).replace(/#/g, '_').trim() || '-';
}

/** A case's name inside its scenario's subtest: its id without the scenario. */
export function ktapCaseName(r: Pick<CaseResult, 'id' | 'scenario'>): string {
  return ktapName(r.id.startsWith(`${r.scenario}/`) ? r.id.slice(r.scenario.length + 1) : r.id);
}

function findingLine(f: Finding): string {
  const where = [
    f.recovery ? `${f.recovery} recovery` : '',
    f.ino !== undefined ? `ino ${f.ino}` : '',
    f.block !== undefined ? `block ${f.block}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  return `${f.class} ${f.code} ${f.name}${where ? ` (${where})` : ''}: ${f.message}`;
}

/** Diagnostic lines (without indentation) and the result line of one case. */
export function ktapCaseLines(n: number, r: CaseResult): string[] {
  const name = ktapCaseName(r);
  const diag: string[] = [];
  const shown = shownFindings(r);
  if (r.status === 'pass') {
    if (shown.length) diag.push(`${name}: allowed: ${shown.map((f) => `${f.class} ${f.name}`).join(', ')}`);
  } else {
    diag.push(
      `${name}: ${r.status}, seed ${r.seed}${r.fired ? `, fired ${r.fired.kind}${'symbol' in r.fired ? ` at ${r.fired.symbol}` : ''}` : ''}, ${(r.durationMs / 1000).toFixed(1)} s`,
    );
    for (const l of (r.error ?? '').split('\n').filter((x) => x.trim())) diag.push(`${name}: ${l}`);
    for (const f of shown) diag.push(`${name}: ${findingLine(f)}`);
    if (r.dir) diag.push(`${name}: artefacts in ${r.dir}`);
  }
  let result = `${r.status === 'pass' ? 'ok' : 'not ok'} ${n} ${name}`;
  if (r.status === 'error' || r.status === 'not-reached') {
    const why = r.status === 'not-reached' ? 'crash point not reached' : (r.error ?? 'error').split('\n')[0]!;
    result += ` # ERROR ${ktapText(why).replace(/#/g, '_').slice(0, 200)}`;
  }
  return [...diag.map((d) => `# ${ktapText(d)}`), result];
}

const indent = (lines: string[]) => lines.map((l) => `  ${l}`);

function subtestHeader(scenario: string, count: number): string[] {
  return indent(['KTAP version 1', `# Subtest: ${ktapName(scenario)}`, `1..${count}`]);
}

function subtestResult(n: number, scenario: string, cases: readonly CaseResult[]): string[] {
  const bad = cases.filter((c) => c.status !== 'pass');
  const diag = bad.length ? [`# ${ktapName(scenario)}: ${bad.length} of ${cases.length} case(s) not ok`] : [];
  return [...diag, `${bad.length ? 'not ok' : 'ok'} ${n} ${ktapName(scenario)}`];
}

/** Cases grouped by scenario, in the order scenarios first appear. */
function byScenario<T extends { scenario: string }>(items: readonly T[]): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const c of items) m.set(c.scenario, [...(m.get(c.scenario) ?? []), c]);
  return m;
}

/** The whole run as one KTAP document (results.ktap). */
export function ktapDocument(s: RunSummary): string {
  const groups = byScenario(s.cases);
  const out = ['KTAP version 1', `1..${groups.size}`];
  let n = 0;
  for (const [scenario, cases] of groups) {
    out.push(...subtestHeader(scenario, cases.length));
    cases.forEach((c, i) => out.push(...indent(ktapCaseLines(i + 1, c))));
    out.push(...subtestResult(++n, scenario, cases));
  }
  return out.join('\n') + '\n';
}

/**
 * Streams KTAP as cases finish. A scenario's subtest must be contiguous, but
 * cases of several scenarios finish interleaved: one scenario is open at a
 * time and its cases are written as they finish; cases of other scenarios
 * wait until the open one is complete, then the next scenario opens with
 * what it has waiting. The plans come from the cases the run will run
 * (`onRunStart`'s third argument). If the run dies before a scenario
 * completes, its subtest stays short of its plan, which KTAP parsers report
 * as a crashed test: the truth.
 */
export class KtapReporter implements Reporter {
  readonly name = 'ktap';
  private planned = new Map<string, number>();
  private waiting = new Map<string, CaseResult[]>();
  private finished = new Map<string, CaseResult[]>();
  private open: string | undefined;
  private scenarioNumber = 0;
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}

  onRunStart(_meta: RunMeta, _total: number, cases: readonly CaseSpec[]) {
    this.planned = new Map([...byScenario(cases.map((c) => ({ scenario: c.scenario.name })))].map(([k, v]) => [k, v.length]));
    this.out.write(`KTAP version 1\n1..${this.planned.size}\n`);
  }

  onCaseEnd(r: CaseResult) {
    // The plan is already written: a case outside it cannot be reported truthfully.
    if (!this.planned.has(r.scenario)) throw new Error(`case ${r.id} is not in the plan given to onRunStart`);
    this.waiting.set(r.scenario, [...(this.waiting.get(r.scenario) ?? []), r]);
    this.flush();
  }

  private flush() {
    for (;;) {
      if (this.open === undefined) {
        const next = [...this.waiting.keys()].find((s) => (this.waiting.get(s)?.length ?? 0) > 0);
        if (next === undefined) return;
        this.open = next;
        this.out.write(subtestHeader(next, this.planned.get(next)!).join('\n') + '\n');
      }
      const scenario = this.open;
      const done = this.finished.get(scenario) ?? [];
      for (const c of this.waiting.get(scenario) ?? []) {
        done.push(c);
        this.out.write(indent(ktapCaseLines(done.length, c)).join('\n') + '\n');
      }
      this.finished.set(scenario, done);
      this.waiting.delete(scenario);
      if (done.length < this.planned.get(scenario)!) return;
      this.out.write(subtestResult(++this.scenarioNumber, scenario, done).join('\n') + '\n');
      this.open = undefined;
    }
  }
}
