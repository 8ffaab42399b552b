import type { CaseResult } from '../results/case.ts';
import type { RunSummary } from '../results/run.ts';
import { progressLine } from '../results/plan.ts';

export function esc(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** How a kernel matrix labels one kernel's suites (harness/report/matrix-reports.ts); a one-kernel run needs none of it. */
export interface JunitSuiteOptions {
  /** Put before each suite's name and each case's classname: the kernel's label. */
  prefix?: string;
  /** <properties> of every suite (the kernel's id, release, line). */
  properties?: Array<[string, string]>;
  /** A line added to a failing or erroring case's text (a finding seen on one kernel and not another says so). */
  note?: (c: CaseResult) => string | undefined;
}

function caseXml(c: CaseResult, o: JunitSuiteOptions): string {
  const name = c.id.slice(c.scenario.length + 1);
  const classname = `${o.prefix ? `${esc(o.prefix)}.` : ''}${esc(c.suite)}.${esc(c.scenario)}`;
  const open = `    <testcase classname="${classname}" name="${esc(name)}" time="${(c.durationMs / 1000).toFixed(3)}"`;
  const note = o.note?.(c);
  const findings = [
    ...(c.failing.length ? c.failing : c.findings).map(
      (f) => `${f.class} ${f.code} ${f.name}${f.recovery ? ` [${f.recovery}]` : ''}: ${f.message}`,
    ),
    ...(note ? [note] : []),
  ].join('\n');
  if (c.status === 'pass') return `${open}/>`;
  if (c.status === 'fail') {
    return `${open}>\n      <failure message="${esc(`${c.failing.length} finding(s) outside the allowance`)}" type="finding">${esc(findings)}</failure>\n    </testcase>`;
  }
  return `${open}>\n      <error message="${esc(c.error ?? c.status)}" type="${c.status}">${esc(findings)}</error>\n    </testcase>`;
}

/** One <testsuite> per scenario of `cases`, in the order the scenarios first come. */
export function junitSuites(cases: readonly CaseResult[], o: JunitSuiteOptions = {}): string[] {
  const byScenario = new Map<string, CaseResult[]>();
  for (const c of cases) byScenario.set(c.scenario, [...(byScenario.get(c.scenario) ?? []), c]);
  const props = o.properties?.length
    ? `\n    <properties>\n${o.properties.map(([k, v]) => `      <property name="${esc(k)}" value="${esc(v)}"/>`).join('\n')}\n    </properties>`
    : '';
  return [...byScenario].map(([name, cs]) => {
    const failures = cs.filter((c) => c.status === 'fail').length;
    const errors = cs.filter((c) => c.status === 'error' || c.status === 'not-reached' || c.status === 'not-run').length;
    const time = cs.reduce((a, c) => a + c.durationMs, 0) / 1000;
    return `  <testsuite name="${o.prefix ? `${esc(o.prefix)}: ` : ''}${esc(name)}" tests="${cs.length}" failures="${failures}" errors="${errors}" skipped="0" time="${time.toFixed(3)}">${props}\n${cs.map((c) => caseXml(c, o)).join('\n')}\n  </testsuite>`;
  });
}

/**
 * JUnit XML: one testsuite per scenario, one testcase per case; errors,
 * not-reached and not-run cases are <error> (never <skipped>, which CI
 * systems count as fine). An interrupted run says so in its name too.
 */
export function junitDocument(s: RunSummary): string {
  const total = s.counts;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="qcrash ${esc(s.runId)}${s.interrupted ? ` (${esc(progressLine(s.interrupted))})` : ''}" tests="${total.total}" failures="${total.fail}" errors="${total.error + total.notReached + (total.notRun ?? 0)}" time="${(s.cases.reduce((a, c) => a + c.durationMs, 0) / 1000).toFixed(3)}">`,
    ...junitSuites(s.cases),
    '</testsuites>',
    '',
  ].join('\n');
}
