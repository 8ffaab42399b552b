import { open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { runOk } from './exec.ts';
import { InfraError } from './errors.ts';

/**
 * Move a file or folder into place at `to`, which readers see whole or not
 * at all. A rename where both lie on one filesystem; across filesystems
 * (EXDEV: a cache volume, a tmpfs $TMPDIR) a sparse copy to a hidden
 * sibling of `to`, fsynced, then renamed inside the destination's
 * filesystem, then the source removed. Errors of the final rename (EEXIST,
 * ENOTEMPTY when another process won the race) reach the caller as from a
 * plain rename; the copy is then removed.
 */
export async function movePath(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
  }
  const staged = join(dirname(to), `.${basename(to)}.${process.pid}.${randomBytes(4).toString('hex')}.moving`);
  try {
    // cp (coreutils: always there) keeps holes, which base images mostly are, and modes.
    await runOk('cp', ['-a', '--sparse=always', '--no-target-directory', '--', from, staged]).catch((e: unknown) => {
      throw new InfraError(`cannot copy ${from} to ${dirname(to)} (another filesystem): ${(e as Error).message}`, { cause: e });
    });
    await syncTree(staged);
    await rename(staged, to);
    await syncTree(dirname(to), false);
  } catch (e) {
    await rm(staged, { recursive: true, force: true });
    throw e;
  }
  await rm(from, { recursive: true, force: true });
}

/** fsync a file, or a folder and (when `deep`) everything below it, so the rename publishes durable content. */
async function syncTree(path: string, deep = true): Promise<void> {
  const fh = await open(path, 'r');
  let isDir: boolean;
  try {
    isDir = (await fh.stat()).isDirectory();
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (!isDir || !deep) return;
  for (const e of await readdir(path, { withFileTypes: true })) {
    if (e.isDirectory() || e.isFile()) await syncTree(join(path, e.name));
  }
}
