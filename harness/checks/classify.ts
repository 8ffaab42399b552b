import type { Finding, FindingClass, RecoveryMode } from '../findings/finding.ts';
import type { Problem } from '../image/e2fsck.ts';
import { iBlocksFromText } from '../image/e2fsck.ts';
import { codeHex, problemInfo } from './problem-codes.ts';

export interface ClassifyContext {
  /** Inode number -> path, for every inode the recipe manifest knows. */
  manifestInodes: Map<number, string>;
  /** Inodes the workload asked to migrate (their i_blocks may legitimately be too high). */
  migratedInodes: Set<number>;
  recovery?: RecoveryMode;
}

/** Problems that are bookkeeping a crash may leave: counts that e2fsck recomputes. */
const summaryCounts = new Set([0x05000b, 0x05000c, 0x05000d, 0x05000e, 0x05000f]);
/** "-" differences: marked in use, owned by nothing. A leak. */
const unownedInUse = new Set([0x050004, 0x050014]);
/** "+" differences: in use but marked free, the next allocation will hand it out twice. */
const inUseMarkedFree = new Set([0x050005, 0x050015, 0x050009, 0x050017]);
const inodeMarkedUnused = new Set([0x050008, 0x050016]);

/**
 * Turn the problem log of `e2fsck -fn` into findings. `leak` is narrow:
 * exactly what one interrupted migration may leave (the 2011 linux-ext4
 * thread: the temporary inode, links 0, leaked until e2fsck, and the index
 * blocks it holds). Everything else is `corruption`. Never classify from the
 * exit status of -p/-y: preen fixes "+" differences silently and exits 1,
 * the same as for a benign leak.
 */
export function classifyProblems(problems: readonly Problem[], text: string, ctx: ClassifyContext): Finding[] {
  const iBlocks = iBlocksFromText(text);
  const findings: Finding[] = [];
  // The one temporary inode a single interrupted migration may leak: the
  // first deleted-with-zero-dtime inode that is not a recipe file.
  let tempInode: number | undefined;
  for (const p of problems) {
    if (p.code === 0x010004 && p.ino !== undefined && !ctx.manifestInodes.has(p.ino)) {
      tempInode = p.ino;
      break;
    }
  }

  for (const p of problems) {
    const info = problemInfo(p.code);
    if (info.header) continue;
    let cls: FindingClass = 'corruption';
    let why = '';
    const isTemp = p.ino !== undefined && p.ino === tempInode;
    if (p.code === 0x010004) {
      if (isTemp) {
        cls = 'leak';
        why = 'the temporary inode of an interrupted migration';
      } else
        why = ctx.manifestInodes.has(p.ino!)
          ? 'a recipe file lost its links'
          : 'a second leaked inode: one migration leaks at most one';
    } else if (p.code === 0x010068) {
      if (isTemp) {
        cls = 'leak';
        why = 'checksum of the leaked temporary inode';
      }
    } else if (p.code === 0x01000d) {
      const v = p.ino !== undefined ? iBlocks.get(p.ino) : undefined;
      if (v && v.is > v.should && p.ino !== undefined && ctx.migratedInodes.has(p.ino)) {
        cls = 'leak';
        why = `i_blocks ${v.is} > ${v.should} on the migrated inode: index blocks counted but freed`;
      } else if (v)
        why =
          v.is < v.should
            ? `i_blocks ${v.is} < ${v.should}: blocks in use are not counted`
            : `i_blocks ${v.is} > ${v.should} on an inode that was not migrated`;
    } else if (unownedInUse.has(p.code) || summaryCounts.has(p.code)) {
      cls = 'leak';
    } else if (inodeMarkedUnused.has(p.code)) {
      if (p.ino === undefined || p.ino === tempInode || !ctx.manifestInodes.has(p.ino)) cls = 'leak';
    } else if (inUseMarkedFree.has(p.code)) {
      why = 'in use but marked free: the next allocation hands it out twice';
    } else if (p.code === 0x000020) {
      // Orphan processing of a valid orphan list is what a crash mid-truncate leaves.
      cls = 'leak';
    }
    const path = p.ino !== undefined ? ctx.manifestInodes.get(p.ino) : undefined;
    // For count problems e2fsck puts the two counts in blk/blk2: they are not block numbers.
    const isCount = summaryCounts.has(p.code);
    const where = isCount
      ? ` (${p.blk ?? p.ino}, counted=${p.blk2 ?? p.ino2})${p.group !== undefined ? ` group ${p.group}` : ''}`
      : `${p.ino !== undefined ? ` (inode ${p.ino}${path ? ` ${path}` : ''})` : ''}${p.blk !== undefined ? ` block ${p.blk}${p.blk2 !== undefined ? `-${p.blk2}` : ''}` : ''}`;
    findings.push({
      class: cls,
      source: 'e2fsck',
      code: codeHex(p.code),
      name: info.name,
      message: `${info.meaning}${where}${why ? `: ${why}` : ''}`,
      ...(ctx.recovery ? { recovery: ctx.recovery } : {}),
      ...(p.ino !== undefined ? { ino: p.ino } : {}),
      ...(p.blk !== undefined && !isCount ? { block: p.blk } : {}),
      ...(p.group !== undefined ? { group: p.group } : {}),
      ...(path ? { path } : {}),
    });
  }
  return findings;
}
