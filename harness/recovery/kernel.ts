import { copyFile, constants, writeFile } from 'node:fs/promises';
import type { Finding } from '../findings/finding.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import { Vm } from '../vm/vm.ts';
import { scanConsole } from '../checks/console.ts';
import { checkReplayedImage, type OracleContext, type RecoveryOutcome } from './e2fsck.ts';

/**
 * The `kernel` recovery mode: boot the kernel under test on a copy of the
 * crash image, mount (journal replay and orphan cleanup by that kernel),
 * unmount, power off; then the same oracles on the host. A mount the kernel
 * refuses is itself a finding.
 */
export async function recoverWithKernel(
  crashImage: string,
  workCopy: string,
  kernel: KernelInfo,
  initrd: string,
  ctx: OracleContext,
  artefactPrefix: string,
): Promise<RecoveryOutcome> {
  await copyFile(crashImage, workCopy, constants.COPYFILE_FICLONE);
  const findings: Finding[] = [];
  {
    await using vm = await Vm.launch({ kernel, initrd, disk: { path: workCopy, format: 'raw' }, name: 'qcrash-recovery' });
    vm.acpiLess = !kernel.acpi;
    const mount = await vm.agent.call('mount', ['defaults'], 120_000);
    if (mount.exitCode !== 0) {
      findings.push({
        class: 'corruption',
        source: 'console',
        code: 'mount-failed',
        name: 'mount-failed',
        message: `the kernel refused to mount the crash image: ${mount.output.trim().split('\n').pop() ?? ''}`,
        recovery: 'kernel',
        detail: mount.output,
      });
    } else {
      const umount = await vm.agent.call('umount', [], 120_000);
      if (umount.exitCode !== 0) {
        findings.push({ class: 'kernel', source: 'console', code: 'umount-failed', name: 'umount-failed', message: `umount failed: ${umount.output.trim()}`, recovery: 'kernel' });
      }
    }
    await vm.powerOff();
    await vm.saveArtefacts(artefactPrefix);
    findings.push(...scanConsole(await vm.consoleText(), { boot: 'recovery boot', recovery: 'kernel' }));
  }
  const outcome = await checkReplayedImage(workCopy, 'kernel', ctx);
  return { ...outcome, findings: [...findings, ...outcome.findings] };
}

export async function writeRunLogs(outcome: RecoveryOutcome, prefix: string): Promise<void> {
  let i = 0;
  for (const r of outcome.runs) {
    i++;
    const base = `${prefix}${outcome.mode}-${i}-${r.mode}`;
    await writeFile(`${base}.txt`, `$ ${r.argv.join(' ')}\n${r.text}\n(exit ${r.exit.code})\n`);
    if (r.xml) await writeFile(`${base}.xml`, r.xml);
  }
}
