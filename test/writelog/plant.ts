import {
  entryKind,
  isFlush,
  writeWriteLog,
  type LogEntry,
  type NewLogEntry,
  type WriteLog,
} from '../../harness/crash/writelog/format.ts';
import { staticRole } from '../../harness/crash/writelog/explain.ts';
import { readGeometry, type FsGeometry } from '../../harness/image/geometry.ts';
import { parseJournalBlock, readJournalLocation, type JournalSuperblock } from '../../harness/image/jbd2.ts';

/**
 * Plant a write-ordering bug in a real log: a jbd2 commit block written
 * before a journal block of its own transaction, with no flush between
 * them (what a commit without its preflush, or a reordering disk cache,
 * would give). The journal write holding that block is split so that the
 * commit lands between the descriptor (and the blocks before) and the
 * chosen block, and the flushes between the journal writes and the commit
 * are removed: all in one epoch now.
 */
export interface PlantedLog {
  path: string;
  /** jbd2 transaction id of the victim transaction. */
  transaction: number;
  /** fs block of the journal block that now lands after the commit, and the block it copies. */
  journalBlock: number;
  homeBlock: number;
  /** fs block of the commit block. */
  commitBlock: number;
}

interface JournalMap {
  toJournal: Map<number, number>;
  jsb: JournalSuperblock;
  blockSize: number;
}

export async function journalMap(image: string): Promise<JournalMap & { layout: FsGeometry }> {
  const layout = await readGeometry(image);
  const journal = await readJournalLocation(image, layout);
  if (!journal) throw new Error(`${image} has no journal with a valid superblock`);
  return { ...journal, blockSize: layout.blockSize, layout };
}

/**
 * `mergeNext` also removes the flush right after the commit, so the epoch
 * holds the writes that followed it too (the checkpoint of the transaction):
 * more writes a power-loss state can lose besides the one that matters,
 * which gives the minimiser something to discard. (It is an ordering bug
 * of its own: checkpoint writes that may land while their commit does not.)
 */
export async function plantCommitBeforeJournalBlock(
  log: WriteLog,
  baseImage: string,
  dest: string,
  opts: { mergeNext?: boolean } = {},
): Promise<PlantedLog> {
  const jm = await journalMap(baseImage);
  const bs = jm.blockSize;
  const perBlock = bs / log.sectorSize;
  const blocksOf = (e: LogEntry) => Array.from({ length: e.nrSectors / perBlock }, (_, k) => e.sector / perBlock + k);
  // Every jbd2 block written, with where it sits.
  const descriptors: Array<{ entry: LogEntry; jblock: number; sequence: number; homes: number[] }> = [];
  const commits = new Map<number, { entry: LogEntry; block: number }>();
  const journalBlockEntry = new Map<number, LogEntry>();
  for (const e of log.entries) {
    if (entryKind(e) !== 'write' || e.sector % perBlock || e.nrSectors % perBlock) continue;
    const data = await log.readData(e);
    blocksOf(e).forEach((b, k) => {
      const jb = jm.toJournal.get(b);
      if (jb === undefined) return;
      journalBlockEntry.set(b, e);
      const p = parseJournalBlock(data.subarray(k * bs, (k + 1) * bs), jm.jsb);
      if (p?.type === 'descriptor')
        descriptors.push({ entry: e, jblock: jb, sequence: p.sequence, homes: p.tags.map((t) => t.homeBlock) });
      if (p?.type === 'commit' && !commits.has(p.sequence)) commits.set(p.sequence, { entry: e, block: b });
    });
  }
  const fsBlockOfJournal = new Map([...jm.toJournal].map(([b, j]) => [j, b]));
  // A transaction whose commit follows its journal blocks across a flush, and one of whose blocks copies
  // a bitmap (a stale copy replayed over it is a clean e2fsck finding) or else an inode table block.
  const preference = ['block-bitmap', 'inode-bitmap', 'inode-table'];
  for (const d of descriptors) {
    const c = commits.get(d.sequence);
    if (!c || c.entry.index <= d.entry.index) continue;
    const rank = (k: number) => preference.indexOf(staticRole(jm.layout, d.homes[k]!)?.kind ?? '');
    const pick = [...d.homes.keys()].filter((k) => rank(k) >= 0).sort((a, b) => rank(a) - rank(b))[0];
    if (pick === undefined) continue;
    const victimBlock = fsBlockOfJournal.get(d.jblock + 1 + pick)!;
    const victim = journalBlockEntry.get(victimBlock);
    if (!victim || victim.index >= c.entry.index) continue;
    const between = log.entries.slice(victim.index + 1, c.entry.index);
    if (!between.some(isFlush)) continue;

    // Split the victim's write at the victim block: [before][commit][victim and after].
    const data = await log.readData(victim);
    const nextFlush = log.entries.find((e) => e.index > c.entry.index && isFlush(e));
    const cut = (victimBlock - victim.sector / perBlock) * perBlock;
    const out: NewLogEntry[] = [];
    for (const e of log.entries) {
      if (e.index === c.entry.index) continue;
      if (e.index > victim.index && e.index < c.entry.index && isFlush(e)) continue;
      if (opts.mergeNext && e === nextFlush) continue;
      const own = entryKind(e) === 'write' ? await log.readData(e) : undefined;
      if (e.index !== victim.index) {
        out.push({ sector: e.sector, nrSectors: e.nrSectors, flags: e.flags, ...(own ? { data: own } : {}) });
        continue;
      }
      if (cut > 0) out.push({ sector: e.sector, nrSectors: cut, flags: e.flags, data: data.subarray(0, cut * log.sectorSize) });
      out.push({ sector: c.entry.sector, nrSectors: c.entry.nrSectors, flags: c.entry.flags, data: await log.readData(c.entry) });
      out.push({
        sector: e.sector + cut,
        nrSectors: e.nrSectors - cut,
        flags: e.flags,
        data: data.subarray(cut * log.sectorSize),
      });
    }
    await writeWriteLog(dest, log.sectorSize, out);
    return { path: dest, transaction: d.sequence, journalBlock: victimBlock, homeBlock: d.homes[pick]!, commitBlock: c.block };
  }
  throw new Error('no committed transaction with a bitmap or inode table block and a flush before its commit in this log');
}
