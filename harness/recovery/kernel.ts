import type { KernelInfo } from '../kernel/kernel.ts';
import { copyImage } from '../image/disk.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import type { RecoveredImage } from './recovery.ts';

export interface KernelRecoveryEnv {
  machines: MachineLauncher;
  kernel: KernelInfo;
  initrd: string;
  /** Where the recovery boot's console and transcripts go: `${prefix}console.log` etc. */
  artefactPrefix: string;
}

/**
 * The `kernel` recovery mode: boot the kernel under test on a copy of the
 * crash image, mount (journal replay and orphan cleanup by that kernel),
 * unmount, power off. A mount the kernel refuses is recorded, not judged.
 */
export async function recoverWithKernel(crashImage: string, workCopy: string, env: KernelRecoveryEnv): Promise<RecoveredImage> {
  const t0 = performance.now();
  await copyImage(crashImage, workCopy);
  await using machine = await env.machines.launch({ role: 'recovery', kernel: env.kernel, initrd: env.initrd, disk: { path: workCopy, format: 'raw' } });
  const mount = await machine.agent.call('mount', ['defaults'], 120_000);
  const umount = mount.exitCode === 0 ? await machine.agent.call('umount', [], 120_000) : undefined;
  await machine.powerOff();
  await machine.saveArtefacts(env.artefactPrefix);
  return {
    mode: 'kernel',
    image: workCopy,
    runs: [],
    console: await machine.consoleText(),
    mount,
    ...(umount ? { umount } : {}),
    durationMs: performance.now() - t0,
  };
}
