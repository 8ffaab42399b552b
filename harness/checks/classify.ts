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

/** Quota problems: e2fsprogs e2fsck/problem.h, 1.47. */
const quotaCodes = new Set([0x000041, 0x00004c, 0x00004f, 0x010062, 0x010063, 0x060002, 0x060006]);
/** What e2fsck's quota support prints (lib/support/mkquota.c, quotaio.c) when it could not read a quota file at all. */
const quotaFileUnreadable = /quota_file_open|check_file failed|quota_read_all_dquots|Invalid quota|quota file/i;

/**
 * A quota problem as one of two findings with their own signatures:
 * `quota-usage-inconsistent` (PR_6_UPDATE_QUOTAS after a quota file that
 * reads back fine: an owner's usage in the quota inode is not what e2fsck
 * counted, "[QUOTA WARNING] Usage inconsistent for ID ..." lines), and
 * `quota-file-damaged` (the quota file does not parse, its inode is
 * invalid, or e2fsck could not set up or write quota). Both are
 * corruption: ext4 journals its quota inodes with the changes they count,
 * so no crash state may leave them apart.
 */
function quotaFinding(p: Problem, text: string, ctx: ClassifyContext): Finding {
  const info = problemInfo(p.code);
  const unreadable = p.code === 0x060002 && quotaFileUnreadable.test(text);
  const usage = p.code === 0x060002 && !unreadable;
  const warnings = text.split('\n').filter((l) => l.startsWith('[QUOTA WARNING]') || l.startsWith('[ERROR]'));
  const type = ['user', 'group', 'project'][p.num ?? 0] ?? `type ${p.num}`;
  const what =
    p.code === 0x060002
      ? `${type} quota: ${usage ? 'usage inconsistent with what e2fsck counted' : 'quota file unreadable'}`
      : info.meaning;
  return {
    class: 'corruption',
    source: 'e2fsck',
    code: usage ? 'quota-usage-inconsistent' : 'quota-file-damaged',
    name: info.name,
    message: `${what}${p.ino !== undefined ? ` (inode ${p.ino})` : ''}${warnings.length ? `: ${warnings.slice(0, 3).join('; ')}` : ''}`,
    ...(ctx.recovery ? { recovery: ctx.recovery } : {}),
    ...(p.ino !== undefined ? { ino: p.ino } : {}),
    ...(warnings.length ? { detail: warnings.join('\n').slice(0, 4000) } : {}),
  };
}

/** PR_1B_DUP_BLOCK: e2fsck reports every multiply-claimed block of an inode as a problem of its own. */
const dupBlockCode = 0x011002;

/**
 * The multiply-claimed blocks of each inode, and the problem that stands
 * for them: one finding per inode, not one per block (a crash state with a
 * duplicated tree made 3192 findings, and megabytes of report, out of one).
 */
function duplicateBlocksByInode(problems: readonly Problem[]): Map<number | undefined, { first: Problem; blocks: number[] }> {
  const byInode = new Map<number | undefined, { first: Problem; blocks: number[] }>();
  for (const p of problems) {
    if (p.code !== dupBlockCode) continue;
    const entry = byInode.get(p.ino) ?? { first: p, blocks: [] };
    if (p.blk !== undefined) entry.blocks.push(p.blk);
    byInode.set(p.ino, entry);
  }
  return byInode;
}

function dupBlocksSummary(blocks: readonly number[]): string {
  if (blocks.length <= 1) return '';
  const shown = blocks.slice(0, 8).join(', ');
  return `${blocks.length} multiply-claimed blocks: ${shown}${blocks.length > 8 ? ', ...' : ''}`;
}

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

  const dupBlocks = duplicateBlocksByInode(problems);
  for (const p of problems) {
    if (p.code === dupBlockCode && dupBlocks.get(p.ino)?.first !== p) continue;
    if (quotaCodes.has(p.code)) {
      findings.push(quotaFinding(p, text, ctx));
      continue;
    }
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
    if (p.code === dupBlockCode) why = dupBlocksSummary(dupBlocks.get(p.ino)!.blocks);
    const path = p.ino !== undefined ? ctx.manifestInodes.get(p.ino) : undefined;
    // For count problems e2fsck puts the two counts in blk/blk2: they are not block numbers.
    const isCount = summaryCounts.has(p.code);
    const where = isCount
      ? ` (${countOf(p.blk) ?? p.ino}, counted=${countOf(p.blk2) ?? p.ino2})${p.group !== undefined ? ` group ${p.group}` : ''}`
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

/**
 * A count e2fsck left in blk/blk2, or undefined where it filled the field
 * with -1 (2^64 - 1 as unsigned; the inode counts are in ino/ino2 then).
 */
function countOf(v: number | undefined): number | undefined {
  return v === undefined || v >= 2 ** 63 ? undefined : v;
}
