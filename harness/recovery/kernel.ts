import type { KernelInfo } from '../kernel/kernel.ts';
import { copyImage } from '../image/disk.ts';
import { InfraError } from '../util/errors.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import { launchRestoring } from '../vm/machine/snapshot-cache.ts';
import type { RecoveredImage } from './recovery.ts';

export interface KernelRecoveryEnv {
  machines: MachineLauncher;
  kernel: KernelInfo;
  initrd: string;
  /** Where the recovery boot's console and transcripts go: `${prefix}console.log` etc. */
  artefactPrefix: string;
  /**
   * The recipe's saved agent-ready state (the same kernel, initramfs,
   * command line and disk device as the workload's): the recovery machine
   * restores it instead of booting. One that does not load is saved anew and
   * this recovery boots.
   */
  restoreFrom?: string;
}

/**
 * The `kernel` recovery mode: start the kernel under test on a copy of the
 * crash image, mount (journal replay and orphan cleanup by that kernel),
 * unmount, power off. A mount the kernel refuses is recorded, not judged.
 *
 * Restored from the agent-ready state, the guest is the one that booted on
 * the base image, with the crash image copy now behind the same virtio disk.
 * Nothing of the disk is cached in it at that point (the kernel drops a
 * block device's pages when its last opener closes it, and nothing has the
 * disk open at agent-ready: /proc/meminfo says Buffers: 0 kB), but a page
 * of the base image read before the save would be the base's bytes, not
 * the crash image's: so the guest drops the disk's buffers (BLKFLSBUF)
 * before it mounts, and the mount reads only the crash image. What the kernel does at
 * the mount (journal replay, orphan cleanup) is the same code on the same
 * bytes either way; test/recovery/kernel-restore.test.ts holds a restored
 * recovery to a booted one.
 */
export async function recoverWithKernel(crashImage: string, workCopy: string, env: KernelRecoveryEnv): Promise<RecoveredImage> {
  const t0 = performance.now();
  await copyImage(crashImage, workCopy);
  await using machine = await launchRestoring(env.machines, {
    role: 'recovery',
    kernel: env.kernel,
    initrd: env.initrd,
    disk: { path: workCopy, format: 'raw' },
    ...(env.restoreFrom ? { restoreFrom: env.restoreFrom } : {}),
  });
  const machineMs = performance.now() - t0 - (machine.queuedMs ?? 0);
  const restored = machine.hello?.phases.restored !== undefined;
  if (restored) {
    const flush = await machine.agent.call('flushbufs', [], 60_000);
    if (flush.exitCode !== 0) {
      await machine.saveArtefacts(env.artefactPrefix);
      throw new InfraError(
        `kernel recovery: the restored guest could not drop its buffers for the test disk (blockdev --flushbufs exit ${flush.exitCode}): ${flush.output.trim()}`,
      );
    }
  }
  const m0 = performance.now();
  const mount = await machine.agent.call('mount', ['defaults'], 120_000);
  const umount = mount.exitCode === 0 ? await machine.agent.call('umount', [], 120_000) : undefined;
  const mountMs = performance.now() - m0;
  await machine.powerOff();
  await machine.saveArtefacts(env.artefactPrefix);
  return {
    mode: 'kernel',
    image: workCopy,
    runs: [],
    console: await machine.consoleText(),
    mount,
    ...(umount ? { umount } : {}),
    machine: { restored, flushed: restored },
    durationMs: performance.now() - t0,
    phases: { queuedMs: machine.queuedMs ?? 0, machineMs, mountMs },
  };
}
