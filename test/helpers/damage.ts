import { execFileSync } from 'node:child_process';

/**
 * Mark a data block of /shapes/ind-13 free in the block bitmap while the
 * file still uses it: e2fsck reports it as PR_5_BLOCK_USED (0x050005, "+"
 * block bitmap differences), a corruption the next allocation would turn
 * into a doubly-owned block. Made with the real debugfs on a real image.
 */
export function freeBlockInUse(image: string, path = '/shapes/ind-13'): number {
  const stat = execFileSync('debugfs', ['-R', `stat ${path}`, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const blk = Number(/\((?:0|0-\d+)\):(\d+)/.exec(stat)![1]);
  execFileSync('debugfs', ['-w', '-R', `freeb ${blk}`, image], { stdio: 'ignore' });
  return blk;
}
