import { runE2fsck } from '../image/e2fsck.ts';
import { sparseCopy } from '../image/disk.ts';
import type { RecoveredImage } from './recovery.ts';

/** The `e2fsck` recovery mode: on a copy of the crash image, replay the journal in user space. */
export async function recoverWithE2fsck(crashImage: string, workCopy: string): Promise<RecoveredImage> {
  const t0 = performance.now();
  await sparseCopy(crashImage, workCopy);
  const replay = await runE2fsck(workCopy, 'journal-only');
  return { mode: 'e2fsck', image: workCopy, runs: [replay], durationMs: performance.now() - t0 };
}
