import type { Finding } from '../findings/finding.ts';
import type { Step } from '../scenario/model.ts';
import { stepReport, type StepRecord } from '../crash/expectations.ts';
import { errnoName, migrationOutcome, readbackVerdict, type MigrationResult } from '../crash/step-report.ts';

/**
 * What the workload's own results say, before any image is read: a step
 * the guest ran and that failed (unless the scenario says it may), an
 * FS_IOC_SETFLAGS that returned neither 0 nor -1 with an errno, and one
 * whose answer the kernel's own readback right after contradicts
 * (`ioctl-lied`: 0, and FS_IOC_GETFLAGS says the file is not extent-mapped;
 * or a refusal, and it is). A migrate
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
      if (readbackVerdict(m) === 'lied') findings.push(liedFinding(step.name, m));
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

/** The ioctl's answer against the kernel's readback on the same fd: the data is intact, the answer is wrong. */
function liedFinding(step: string, m: MigrationResult): Finding {
  const flags = m.readback?.flags;
  const blocks = m.readback?.blocks;
  const said = m.ret === 0 ? 'returned 0' : `refused with ${errnoName(m.errno)}`;
  const want = m.to === 'blocks' ? 'block-mapped' : 'extent-mapped';
  const is = m.ret === 0 ? `not ${want}: the migration did not happen` : `${want}: the migration happened`;
  const bit = m.to === 'blocks' ? '-EXTENTS_FL' : '+EXTENTS_FL';
  return {
    class: 'api',
    source: 'workload',
    code: 'ioctl-lied',
    name: 'ioctl-lied',
    message: `${m.path}: FS_IOC_SETFLAGS (${bit}) ${said}, but FS_IOC_GETFLAGS right after says the ${m.type === 'dir' ? 'directory' : 'file'} is ${is}`,
    path: m.path,
    detail: `step "${step}": ret ${m.ret} errno ${m.errno}; flags ${flags && 'value' in flags ? `0x${flags.value.toString(16)}` : '?'}; st_blocks ${blocks && 'value' in blocks ? blocks.value : '?'}`,
  };
}
