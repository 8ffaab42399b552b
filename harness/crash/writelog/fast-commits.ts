import { readGeometry } from '../../image/geometry.ts';
import { fastCommitArea, readJournalLocation } from '../../image/jbd2.ts';
import { entryKind, type WriteLog } from './format.ts';

/**
 * The fast commits a recorded write log holds. ext4 writes a fast commit
 * into the journal's fast-commit area (its last s_num_fc_blks blocks) as a
 * run of tag-length-value records (fs/ext4/fast_commit.h: little-endian
 * u16 tag, u16 length), the first after a full commit opening with a HEAD
 * tag, each fast commit ending with one TAIL tag (its transaction id and a
 * CRC). Counting the TAIL tags written there counts the fast commits, and
 * says that fsyncs went out between full commits.
 */
export interface FastCommitSummary {
  /** TAIL tags written: one per fast commit. */
  commits: number;
  /** Writes of blocks inside the fast-commit area. */
  blockWrites: number;
  /** The transaction ids the tails name, sorted, each once. */
  tids: number[];
  /** Inodes an INODE tag logged, sorted, each once. */
  inodes: number[];
}

const TAG_INODE = 0x0006;
const TAG_TAIL = 0x0008;

/** Walk one fast-commit block's records: the TAIL tags' tids and the INODE tags' inode numbers. */
export function parseFastCommitBlock(b: Buffer): { tails: number[]; inodes: number[] } {
  const tails: number[] = [];
  const inodes: number[] = [];
  for (let at = 0; at + 4 <= b.length;) {
    const tag = b.readUInt16LE(at);
    const len = b.readUInt16LE(at + 2);
    // A zeroed or torn remainder: no tag is 0, and no record runs past the block.
    if (tag === 0 || at + 4 + len > b.length) break;
    if (tag === TAG_TAIL && len >= 8) tails.push(b.readUInt32LE(at + 4));
    if (tag === TAG_INODE && len >= 4) inodes.push(b.readUInt32LE(at + 4));
    at += 4 + len;
  }
  return { tails, inodes };
}

/** Count the fast commits the log wrote, locating the journal and its fast-commit area on the base image. */
export async function countFastCommits(log: WriteLog, baseImage: string): Promise<FastCommitSummary> {
  const geo = await readGeometry(baseImage);
  const journal = await readJournalLocation(baseImage, geo);
  const out: FastCommitSummary = { commits: 0, blockWrites: 0, tids: [], inodes: [] };
  if (!journal) return out;
  const [first, end] = fastCommitArea(journal.jsb);
  const tids = new Set<number>();
  const inodes = new Set<number>();
  const bs = geo.blockSize;
  for (const e of log.entries) {
    if (entryKind(e) !== 'write') continue;
    const start = e.sector * log.sectorSize;
    const blocks = Math.floor((e.nrSectors * log.sectorSize) / bs);
    let data: Buffer | undefined;
    for (let i = 0; i < blocks; i++) {
      if (start % bs) break;
      const jb = journal.toJournal.get(start / bs + i);
      if (jb === undefined || jb < first || jb >= end) continue;
      data ??= await log.readData(e);
      const r = parseFastCommitBlock(data.subarray(i * bs, (i + 1) * bs));
      out.blockWrites++;
      out.commits += r.tails.length;
      r.tails.forEach((t) => tids.add(t));
      r.inodes.forEach((n) => inodes.add(n));
    }
  }
  out.tids = [...tids].sort((a, b) => a - b);
  out.inodes = [...inodes].sort((a, b) => a - b);
  return out;
}
