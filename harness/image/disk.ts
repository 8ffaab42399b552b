import { copyFile, constants } from 'node:fs/promises';
import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';

/**
 * A case's own disk: a qcow2 overlay on the cached base (about 70 ms, a few
 * KiB) or a full copy (reflink where the filesystem can). The base is never
 * written.
 */
export async function createCaseDisk(basePath: string, dest: string, format: 'qcow2' | 'raw' = 'qcow2'): Promise<{ path: string; format: 'qcow2' | 'raw' }> {
  if (format === 'qcow2') {
    await runOk(await tool('qemu-img'), ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', basePath, dest]);
  } else {
    await copyFile(basePath, dest, constants.COPYFILE_FICLONE);
  }
  return { path: dest, format };
}

/** A raw image that e2fsck and debugfs can read, from an overlay or a raw disk. */
export async function flattenToRaw(disk: { path: string; format: 'qcow2' | 'raw' }, dest: string): Promise<string> {
  if (disk.format === 'raw') await copyFile(disk.path, dest, constants.COPYFILE_FICLONE);
  else await runOk(await tool('qemu-img'), ['convert', '-O', 'raw', disk.path, dest]);
  return dest;
}
