import type { CaseResult } from '../results/case.ts';
import type { RunSummary } from '../results/run.ts';

function esc(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

function caseXml(c: CaseResult): string {
  const name = c.id.slice(c.scenario.length + 1);
  const open = `    <testcase classname="${esc(c.suite)}.${esc(c.scenario)}" name="${esc(name)}" time="${(c.durationMs / 1000).toFixed(3)}"`;
  const findings = (c.failing.length ? c.failing : c.findings)
    .map((f) => `${f.class} ${f.code} ${f.name}${f.recovery ? ` [${f.recovery}]` : ''}: ${f.message}`)
    .join('\n');
  if (c.status === 'pass') return `${open}/>`;
  if (c.status === 'fail') {
    return `${open}>\n      <failure message="${esc(`${c.failing.length} finding(s) outside the allowance`)}" type="finding">${esc(findings)}</failure>\n    </testcase>`;
  }
  return `${open}>\n      <error message="${esc(c.error ?? c.status)}" type="${c.status}">${esc(findings)}</error>\n    </testcase>`;
}

/** JUnit XML: one testsuite per scenario, one testcase per case; errors and not-reached are <error>. */
export function junitDocument(s: RunSummary): string {
  const byScenario = new Map<string, CaseResult[]>();
  for (const c of s.cases) byScenario.set(c.scenario, [...(byScenario.get(c.scenario) ?? []), c]);
  const suites: string[] = [];
  for (const [name, cases] of byScenario) {
    const failures = cases.filter((c) => c.status === 'fail').length;
    const errors = cases.filter((c) => c.status === 'error' || c.status === 'not-reached').length;
    const time = cases.reduce((a, c) => a + c.durationMs, 0) / 1000;
    suites.push(
      `  <testsuite name="${esc(name)}" tests="${cases.length}" failures="${failures}" errors="${errors}" skipped="0" time="${time.toFixed(3)}">\n${cases.map(caseXml).join('\n')}\n  </testsuite>`,
    );
  }
  const total = s.counts;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="qcrash ${esc(s.runId)}" tests="${total.total}" failures="${total.fail}" errors="${total.error + total.notReached}" time="${(s.cases.reduce((a, c) => a + c.durationMs, 0) / 1000).toFixed(3)}">`,
    ...suites,
    '</testsuites>',
    '',
  ].join('\n');
}
