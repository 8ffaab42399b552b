import type { Finding } from '../findings/finding.ts';
import type { Step } from '../scenario/model.ts';
import { stepReport, type StepRecord } from '../crash/expectations.ts';
import { errnoName, migrationOutcome } from '../crash/step-report.ts';

/**
 * What the workload's own results say, before any image is read: a step
 * the guest ran and that failed (unless the scenario says it may), and an
 * FS_IOC_SETFLAGS that returned neither 0 nor -1 with an errno. A migrate
 * whose ioctl refused a file is not a failure of the step: the content and
 * durability oracles check that the file was left as it was.
 * These findings belong to the crash state, not to a recovery.
 */
export function workloadFindings(steps: readonly Step[], records: readonly StepRecord[]): Finding[] {
  const byName = new Map(records.map((r) => [r.name, r]));
  const findings: Finding[] = [];
  for (const step of steps) {
    const r = byName.get(step.name);
    if (!r || r.exitCode === undefined) continue;
    const output = r.output?.trim() ?? '';
    if (r.exitCode !== 0 && !step.mayFail) {
      const firstLines = output.split('\n').slice(0, 3).join(' / ');
      findings.push({
        class: 'kernel',
        source: 'workload',
        code: 'step-failed',
        name: 'step-failed',
        message: `step "${step.name}" (${step.kind}) failed in the guest with exit ${r.exitCode}${firstLines ? `: ${firstLines}` : ' and no output'}`,
        ...(output ? { detail: output.slice(0, 4000) } : {}),
      });
    }
    const report = stepReport(step, r);
    if (report?.kind !== 'migrate') continue;
    for (const m of report.files) {
      if (migrationOutcome(m) !== 'bad-return') continue;
      findings.push({
        class: 'kernel',
        source: 'workload',
        code: 'ioctl-bad-return',
        name: 'ioctl-bad-return',
        message: `${m.path}: FS_IOC_SETFLAGS (+EXTENTS_FL) returned ${m.ret}${m.errno ? ` with ${errnoName(m.errno)}` : ''}, neither 0 nor -1 with an errno`,
        path: m.path,
        detail: `step "${step.name}": migrate ${m.type} ${m.ret} ${m.errno} ${m.path}`,
      });
    }
  }
  return findings;
}
