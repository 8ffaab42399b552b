import { runE2fsck } from '../image/e2fsck.ts';
import { copyImage } from '../image/disk.ts';
import type { RecoveredImage } from './recovery.ts';

/** The `e2fsck` recovery mode: on a copy of the crash image, replay the journal in user space. */
export async function recoverWithE2fsck(crashImage: string, workCopy: string): Promise<RecoveredImage> {
  const t0 = performance.now();
  await copyImage(crashImage, workCopy);
  const replay = await runE2fsck(workCopy, 'journal-only');
  return { mode: 'e2fsck', image: workCopy, runs: [replay], durationMs: performance.now() - t0 };
}

/**
 * The same recovery on the image itself, recording what it overwrites in
 * `undoFile` (e2fsck -z) so the caller can put the image back (image/undo-file.ts):
 * a write-log working image checked in place, with no copy per state.
 */
export async function recoverWithE2fsckInPlace(image: string, undoFile: string | undefined): Promise<RecoveredImage> {
  const t0 = performance.now();
  const replay = await runE2fsck(image, 'journal-only', { undoFile });
  return { mode: 'e2fsck', image, runs: [replay], durationMs: performance.now() - t0 };
}
