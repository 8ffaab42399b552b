import { resolve } from 'node:path';
import { runOk } from '../util/exec.ts';
import { CommandError } from '../util/errors.ts';
import { runSpawned } from './spawner.ts';
import { tool } from '../util/tools.ts';

/**
 * A case's own disk: a sparse raw copy of the cached base (a reflink where
 * the filesystem can), or a qcow2 overlay on it. The base is never written.
 * Raw is what cases of recipe images use: the disk is the crash image as
 * soon as QEMU is gone, and copying a 32 MiB base sparsely (about 20 ms)
 * costs less than creating an overlay and flattening it for e2fsck
 * afterwards (about 100 ms). A user's image, which may be large, gets an
 * overlay: QEMU opens a backing file read-only.
 */
export async function createCaseDisk(
  basePath: string,
  dest: string,
  format: 'qcow2' | 'raw' = 'raw',
): Promise<{ path: string; format: 'qcow2' | 'raw' }> {
  if (format === 'qcow2') {
    // An absolute backing path: the overlay is opened from another directory than it was made in.
    await runOk(await tool('qemu-img'), ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', resolve(basePath), dest]);
  } else {
    await copyImage(basePath, dest);
  }
  return { path: dest, format };
}

/**
 * A raw image's copy that keeps its holes: cp makes a reflink where the
 * filesystem can and writes only the data otherwise. (Node's copyFile falls
 * back to copy_file_range, which writes every hole out as zeros: a 64 MiB
 * image with 2 MiB of data took 64 MiB per copy.)
 */
export async function copyImage(src: string, dest: string): Promise<string> {
  // From the tool spawner: a fork of the harness itself costs it 10-20 ms at its size in a write-log run.
  const r = await runSpawned('cp', ['--sparse=always', '--reflink=auto', '--', src, dest]);
  if (r.failed)
    throw new CommandError(
      `cp ${src} ${dest} failed (${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`}): ${r.stderr.trim()}`,
      r.argv,
      r.exitCode,
      r.stdout,
      r.stderr,
    );
  return dest;
}

/** A raw image that e2fsck and debugfs can read, from an overlay or a raw disk. */
export async function flattenToRaw(disk: { path: string; format: 'qcow2' | 'raw' }, dest: string): Promise<string> {
  if (disk.format === 'raw') await copyImage(disk.path, dest);
  // qemu-img writes zeroed clusters as holes (its -S 4k default).
  else await runOk(await tool('qemu-img'), ['convert', '-O', 'raw', disk.path, dest]);
  return dest;
}
