import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { KernelInfo } from '../../kernel/kernel.ts';
import type { BaseImage } from '../../image/build.ts';
import { createCaseDisk } from '../../image/disk.ts';
import { cacheDir } from '../../util/paths.ts';
import { hashJson } from '../../util/hash.ts';
import { TempDir } from '../../util/tempdir.ts';
import type { Accel } from './accel.ts';
import { kernelCommandLine } from './argv.ts';
import type { MachineLauncher } from './machine.ts';

/** Bump when the VM's argv changes shape: a saved state only restores into the same machine. */
const MACHINE_VERSION = 2;

/**
 * The saved "agent ready" state for a kernel, initramfs and base image:
 * booted once, then every case restores it instead of booting (about 0.3 s
 * instead of 2-4 s under TCG). Cached across runs.
 */
export async function agentReadySnapshot(machines: MachineLauncher, kernel: KernelInfo, initrd: string, base: BaseImage, accel: Accel, qemuVersion: string): Promise<string> {
  // The command line is part of the saved guest (the kernel parsed it at boot).
  const key = hashJson({ MACHINE_VERSION, kernel: kernel.id, bz: kernel.bzImage, initrd, image: base.recipeHash, accel, qemuVersion, cmdline: kernelCommandLine() }).slice(0, 16);
  const file = join(cacheDir('snapshots'), `${key}.state`);
  if (await access(file).then(() => true, () => false)) return file;
  await using tmp = await TempDir.create('snapshot-boot');
  // Raw, as the cases' disks are: the saved device state then matches theirs exactly.
  const disk = await createCaseDisk(base.path, tmp.join('disk.img'), 'raw');
  await using machine = await machines.launch({ role: 'snapshot', kernel, initrd, disk, accel });
  await machine.saveState(file);
  return file;
}
