import { openSync, closeSync, readSync } from 'node:fs';
import { runOk } from '../../util/exec.ts';
import { tool } from '../../util/tools.ts';
import { InfraError } from '../../util/errors.ts';
import { debugfsBatch } from '../../image/debugfs.ts';
import { entryKind, type LogEntry, type WriteLog } from './format.ts';
import type { WriteRef } from './states.ts';

/**
 * What a logged write held, in the terms of a bug report: a jbd2 descriptor
 * or commit block, the journal copy of an inode table block of group G
 * (inodes a-b), a block bitmap, an indirect block of inode N... From the
 * filesystem's layout (dumpe2fs), the journal inode's map and superblock,
 * the write's own bytes (jbd2 blocks carry a magic and a type), the log's
 * descriptor blocks (which home block each journal block copies), and
 * debugfs icheck/ncheck/stat on the state image for blocks inodes own.
 */

// ---------------------------------------------------------------- layout (dumpe2fs)

export interface GroupLayout {
  group: number;
  first: number;
  last: number;
  /** Primary or backup superblock. */
  superblock?: number;
  gdt?: [number, number];
  reservedGdt?: [number, number];
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: [number, number];
}

export interface FsLayout {
  blockSize: number;
  blockCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  journalInode?: number;
  groups: GroupLayout[];
}

function headerNumber(text: string, label: string): number | undefined {
  const m = new RegExp(`^${label.replace(/[()]/g, '\\$&')}:\\s*(\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

const range = (s: string): [number, number] => {
  const [a, b] = s.split('-').map(Number);
  return [a!, b ?? a!];
};

/** Parse `dumpe2fs IMAGE` (e2fsprogs 1.47): the header fields and each group's metadata blocks. */
export function parseDumpe2fs(text: string): FsLayout {
  const need = (label: string) => {
    const v = headerNumber(text, label);
    if (v === undefined) throw new InfraError(`dumpe2fs output has no "${label}:" line`);
    return v;
  };
  const groups: GroupLayout[] = [];
  const chunks = text.split(/^(?=Group \d+: \(Blocks )/m).slice(1);
  for (const c of chunks) {
    const head = /^Group (\d+): \(Blocks (\d+)-(\d+)\)/.exec(c)!;
    const sb = /(?:Primary|Backup) superblock at (\d+)/.exec(c);
    const gdt = /Group descriptors at (\d+(?:-\d+)?)/.exec(c);
    const rgdt = /Reserved GDT blocks at (\d+(?:-\d+)?)/.exec(c);
    const bb = /Block bitmap at (\d+)/.exec(c);
    const ib = /Inode bitmap at (\d+)/.exec(c);
    const it = /Inode table at (\d+(?:-\d+)?)/.exec(c);
    if (!bb || !ib || !it) throw new InfraError(`dumpe2fs: group ${head[1]} has no bitmap or inode table line`);
    groups.push({
      group: Number(head[1]),
      first: Number(head[2]),
      last: Number(head[3]),
      ...(sb ? { superblock: Number(sb[1]) } : {}),
      ...(gdt ? { gdt: range(gdt[1]!) } : {}),
      ...(rgdt ? { reservedGdt: range(rgdt[1]!) } : {}),
      blockBitmap: Number(bb[1]),
      inodeBitmap: Number(ib[1]),
      inodeTable: range(it[1]!),
    });
  }
  const journalInode = headerNumber(text, 'Journal inode');
  return {
    blockSize: need('Block size'),
    blockCount: need('Block count'),
    firstDataBlock: need('First block'),
    blocksPerGroup: need('Blocks per group'),
    inodesPerGroup: need('Inodes per group'),
    inodeSize: need('Inode size'),
    ...(journalInode !== undefined ? { journalInode } : {}),
    groups,
  };
}

// ---------------------------------------------------------------- block maps (debugfs stat)

export type MapRunKind = 'data' | 'IND' | 'DIND' | 'TIND' | 'ETB';
export interface MapRun {
  kind: MapRunKind;
  /** First logical block (data runs). */
  logical?: number;
  /** Extent tree level of an index block (ETB runs). */
  level?: number;
  physical: number;
  count: number;
}

/**
 * Parse the BLOCKS:/EXTENTS: section of `debugfs stat`:
 * "(0-9):9-18, (IND):22, (12-23):23-34" or "(ETB0):1234, (0-99):2000-2099".
 * Uninitialised extents ("[uninit]") count as data.
 */
export function parseBlockMap(text: string): MapRun[] {
  const section = /^(?:BLOCKS|EXTENTS):\s*\n?([\s\S]*?)(?:\n\s*\n|\nTOTAL|$)/m.exec(text)?.[1] ?? text;
  const runs: MapRun[] = [];
  for (const m of section.matchAll(/\((IND|DIND|TIND|ETB(\d+)|(\d+)(?:-(\d+))?)\)(?:\[[a-z]+\])?:(\d+)(?:-(\d+))?/g)) {
    const physical = Number(m[5]);
    const count = m[6] !== undefined ? Number(m[6]) - physical + 1 : 1;
    if (m[3] !== undefined) {
      const first = Number(m[3]);
      const last = m[4] !== undefined ? Number(m[4]) : first;
      runs.push({ kind: 'data', logical: first, physical, count: Math.max(count, last - first + 1) });
    } else if (m[2] !== undefined) runs.push({ kind: 'ETB', level: Number(m[2]), physical, count });
    else runs.push({ kind: m[1] as MapRunKind, physical, count });
  }
  return runs;
}

/** `debugfs -R 'icheck B...'`: block -> owning inode (undefined for "<block not found>"). */
export function parseIcheck(text: string): Map<number, number | undefined> {
  const out = new Map<number, number | undefined>();
  for (const m of text.matchAll(/^(\d+)\s+(\d+|<block not found>)\s*$/gm)) out.set(Number(m[1]), m[2]!.startsWith('<') ? undefined : Number(m[2]));
  return out;
}

/** `debugfs -R 'ncheck I...'`: inode -> first path (debugfs prints "//dir" for a directory under the root: normalised). */
export function parseNcheck(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const m of text.matchAll(/^(\d+)\s+(\/.*?)\s*$/gm)) if (!out.has(Number(m[1]))) out.set(Number(m[1]), m[2]!.replace(/^\/\/+/, '/'));
  return out;
}

// ---------------------------------------------------------------- jbd2 blocks

export const JBD2_MAGIC = 0xc03b3998;
export const jbd2BlockTypes = { 1: 'descriptor', 2: 'commit', 3: 'superblock-v1', 4: 'superblock-v2', 5: 'revoke', 6: 'fast-commit' } as const;
const INCOMPAT_64BIT = 0x2;
const INCOMPAT_CSUM_V2 = 0x8;
const INCOMPAT_CSUM_V3 = 0x10;
const TAG_SAME_UUID = 0x2;
const TAG_LAST = 0x8;

export interface JournalSuperblock {
  blockSize: number;
  maxLen: number;
  first: number;
  sequence: number;
  start: number;
  compat: number;
  incompat: number;
  /** Bytes per descriptor tag (jbd2's journal_tag_bytes). */
  tagBytes: number;
  /** Descriptor and revoke blocks end in a 4-byte checksum tail (csum v2/v3). */
  csumTail: boolean;
  is64bit: boolean;
}

/** The jbd2 superblock (journal block 0), big-endian; undefined if the magic or type does not match. */
export function parseJournalSuperblock(b: Buffer): JournalSuperblock | undefined {
  if (b.length < 0x30 || b.readUInt32BE(0) !== JBD2_MAGIC) return undefined;
  const type = b.readUInt32BE(4);
  if (type !== 3 && type !== 4) return undefined;
  const incompat = type === 4 ? b.readUInt32BE(0x28) : 0;
  const is64bit = (incompat & INCOMPAT_64BIT) !== 0;
  const csum3 = (incompat & INCOMPAT_CSUM_V3) !== 0;
  const csum2 = (incompat & INCOMPAT_CSUM_V2) !== 0;
  let tagBytes: number;
  if (csum3) tagBytes = 16;
  else tagBytes = 12 + (csum2 ? 2 : 0) - (is64bit ? 0 : 4);
  return {
    blockSize: b.readUInt32BE(0xc),
    maxLen: b.readUInt32BE(0x10),
    first: b.readUInt32BE(0x14),
    sequence: b.readUInt32BE(0x18),
    start: b.readUInt32BE(0x1c),
    compat: type === 4 ? b.readUInt32BE(0x24) : 0,
    incompat,
    tagBytes,
    csumTail: csum2 || csum3,
    is64bit,
  };
}

export type JournalBlock =
  | { type: 'descriptor'; sequence: number; tags: Array<{ homeBlock: number; flags: number }> }
  | { type: 'commit'; sequence: number }
  | { type: 'revoke'; sequence: number; revoked: number[] }
  | { type: 'superblock'; sequence: number }
  | { type: 'fast-commit'; sequence: number };

/** A journal block that starts with the jbd2 header (magic, block type, transaction id); undefined for a data (copy) block. */
export function parseJournalBlock(b: Buffer, jsb: JournalSuperblock): JournalBlock | undefined {
  if (b.length < 12 || b.readUInt32BE(0) !== JBD2_MAGIC) return undefined;
  const type = b.readUInt32BE(4);
  const sequence = b.readUInt32BE(8);
  switch (type) {
    case 1: {
      const tags: Array<{ homeBlock: number; flags: number }> = [];
      const limit = b.length - (jsb.csumTail ? 4 : 0);
      let at = 12;
      while (at + jsb.tagBytes <= limit) {
        const csum3 = jsb.tagBytes === 16;
        const lo = b.readUInt32BE(at);
        const flags = csum3 ? b.readUInt32BE(at + 4) : b.readUInt16BE(at + 6);
        const hi = jsb.is64bit ? b.readUInt32BE(at + 8) : 0;
        tags.push({ homeBlock: hi * 2 ** 32 + lo, flags });
        at += jsb.tagBytes;
        if (!(flags & TAG_SAME_UUID)) at += 16;
        if (flags & TAG_LAST) break;
      }
      return { type: 'descriptor', sequence, tags };
    }
    case 2:
      return { type: 'commit', sequence };
    case 3:
    case 4:
      return { type: 'superblock', sequence };
    case 5: {
      const count = b.readUInt32BE(12);
      const size = jsb.is64bit ? 8 : 4;
      const revoked: number[] = [];
      for (let at = 16; at + size <= Math.min(count, b.length); at += size) {
        revoked.push(size === 8 ? Number(b.readBigUInt64BE(at)) : b.readUInt32BE(at));
      }
      return { type: 'revoke', sequence, revoked };
    }
    case 6:
      return { type: 'fast-commit', sequence };
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------- roles

export type BlockRoleKind =
  | 'superblock'
  | 'group-descriptors'
  | 'reserved-gdt'
  | 'block-bitmap'
  | 'inode-bitmap'
  | 'inode-table'
  | 'jbd2-superblock'
  | 'jbd2-descriptor'
  | 'jbd2-commit'
  | 'jbd2-revoke'
  | 'jbd2-fast-commit'
  | 'journal-data'
  | 'indirect'
  | 'extent-index'
  | 'directory'
  | 'data'
  | 'unowned';

export interface BlockRole {
  kind: BlockRoleKind;
  /** One line, e.g. "inode table of group 0 (inodes 1-32)". */
  text: string;
  group?: number;
  inodes?: [number, number];
  ino?: number;
  path?: string;
  /** jbd2 transaction id (descriptor, commit, revoke, and journal copies). */
  transaction?: number;
  /** A journal copy: the block it will be written back to, and what that block is. */
  home?: { block: number; role: BlockRole };
}

/** The role of a block from the layout alone (fixed metadata), or undefined for a block an inode may own. */
export function staticRole(layout: FsLayout, block: number): BlockRole | undefined {
  if (block < layout.firstDataBlock) return { kind: 'superblock', text: 'boot block / primary superblock' };
  // Not only the block's own group: with flex_bg a group's bitmaps and table live in another group's range.
  for (const g of layout.groups) {
    if (g.superblock === block) return { kind: 'superblock', text: `${g.group === 0 ? 'primary' : 'backup'} superblock (group ${g.group})`, group: g.group };
    if (g.gdt && block >= g.gdt[0] && block <= g.gdt[1]) return { kind: 'group-descriptors', text: `group descriptor table${g.group ? ` (backup in group ${g.group})` : ''}`, group: g.group };
    if (g.reservedGdt && block >= g.reservedGdt[0] && block <= g.reservedGdt[1]) return { kind: 'reserved-gdt', text: `reserved GDT block (group ${g.group})`, group: g.group };
    if (g.blockBitmap === block) return { kind: 'block-bitmap', text: `block bitmap of group ${g.group}`, group: g.group };
    if (g.inodeBitmap === block) return { kind: 'inode-bitmap', text: `inode bitmap of group ${g.group}`, group: g.group };
    if (block >= g.inodeTable[0] && block <= g.inodeTable[1]) {
      const perBlock = layout.blockSize / layout.inodeSize;
      const a = g.group * layout.inodesPerGroup + (block - g.inodeTable[0]) * perBlock + 1;
      const inodes: [number, number] = [a, a + perBlock - 1];
      return { kind: 'inode-table', text: `inode table of group ${g.group} (inodes ${inodes[0]}-${inodes[1]})`, group: g.group, inodes };
    }
  }
  return undefined;
}

export interface WritePart {
  /** Filesystem blocks [first, last] this part covers. */
  blocks: [number, number];
  role: BlockRole;
}

export interface WriteExplanation {
  ref: WriteRef;
  parts: WritePart[];
  /** The parts in one line. */
  summary: string;
}

/** What the journal looks like: its block map and superblock, from the image. */
interface JournalInfo {
  jsb: JournalSuperblock;
  /** fs block -> journal block. */
  toJournal: Map<number, number>;
}

function readBlock(path: string, block: number, blockSize: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(blockSize);
    readSync(fd, b, 0, blockSize, block * blockSize);
    return b;
  } finally {
    closeSync(fd);
  }
}

/**
 * Explains writes of one log against a state image (icheck/ncheck run
 * there; a block no inode owns there is looked up in the base image too,
 * e.g. an old indirect block the migration freed).
 */
export class WriteExplainer {
  private descriptorsByJournalBlock?: Map<number, Array<{ index: number; sequence: number; home: number }>>;

  private constructor(
    readonly log: WriteLog,
    readonly layout: FsLayout,
    private readonly journal: JournalInfo | undefined,
    readonly stateImage: string,
    readonly baseImage: string | undefined,
  ) {}

  static async create(log: WriteLog, stateImage: string, baseImage?: string): Promise<WriteExplainer> {
    const dump = await runOk(await tool('dumpe2fs'), [stateImage], { env: { LANG: 'C', LC_ALL: 'C' } });
    const layout = parseDumpe2fs(dump.stdout);
    let journal: JournalInfo | undefined;
    if (layout.journalInode) {
      const [stat] = await debugfsBatch(stateImage, [`stat <${layout.journalInode}>`]);
      const toJournal = new Map<number, number>();
      for (const r of parseBlockMap(stat ?? '')) {
        if (r.kind !== 'data') continue;
        for (let i = 0; i < r.count; i++) toJournal.set(r.physical + i, r.logical! + i);
      }
      const first = [...toJournal].find(([, j]) => j === 0)?.[0];
      const jsb = first !== undefined ? parseJournalSuperblock(readBlock(stateImage, first, layout.blockSize)) : undefined;
      if (jsb) journal = { jsb, toJournal };
    }
    return new WriteExplainer(log, layout, journal, stateImage, baseImage);
  }

  private fsBlocks(e: LogEntry): [number, number] {
    const bytes = e.sector * this.log.sectorSize;
    const first = Math.floor(bytes / this.layout.blockSize);
    const last = Math.floor((bytes + e.nrSectors * this.log.sectorSize - 1) / this.layout.blockSize);
    return [first, last];
  }

  /** Every descriptor in the log: journal block -> the home blocks copied there (by which descriptor, in log order). */
  private async descriptors(): Promise<Map<number, Array<{ index: number; sequence: number; home: number }>>> {
    if (this.descriptorsByJournalBlock) return this.descriptorsByJournalBlock;
    const map = new Map<number, Array<{ index: number; sequence: number; home: number }>>();
    const j = this.journal;
    if (j) {
      const bs = this.layout.blockSize;
      for (const e of this.log.entries) {
        if (entryKind(e) !== 'write') continue;
        const [first, last] = this.fsBlocks(e);
        if (![...Array(last - first + 1).keys()].some((k) => j.toJournal.has(first + k))) continue;
        const data = await this.log.readData(e);
        for (let b = first; b <= last; b++) {
          const jb = j.toJournal.get(b);
          if (jb === undefined) continue;
          const off = b * bs - e.sector * this.log.sectorSize;
          if (off < 0 || off + bs > data.length) continue;
          const parsed = parseJournalBlock(data.subarray(off, off + bs), j.jsb);
          if (parsed?.type !== 'descriptor') continue;
          parsed.tags.forEach((t, k) => {
            let target = jb + 1 + k;
            if (target >= j.jsb.maxLen) target = j.jsb.first + (target - j.jsb.maxLen);
            map.set(target, [...(map.get(target) ?? []), { index: e.index, sequence: parsed.sequence, home: t.homeBlock }]);
          });
        }
      }
    }
    this.descriptorsByJournalBlock = map;
    return map;
  }

  /** Explain each write (by its ref); blocks no fixed role names are looked up with debugfs in one batch. */
  async explain(refs: readonly WriteRef[]): Promise<WriteExplanation[]> {
    const bs = this.layout.blockSize;
    const pending: Array<{ ref: WriteRef; block: number; role?: BlockRole; homeOf?: { block: number; sequence: number } }> = [];
    for (const ref of refs) {
      const e = this.log.entries[ref.index]!;
      const [first, last] = this.fsBlocks(e);
      const data = entryKind(e) === 'write' ? await this.log.readData(e) : Buffer.alloc(0);
      for (let b = first; b <= last; b++) {
        const jb = this.journal?.toJournal.get(b);
        if (jb !== undefined && this.journal) {
          const off = b * bs - e.sector * this.log.sectorSize;
          const parsed = off >= 0 && off + bs <= data.length ? parseJournalBlock(data.subarray(off, off + bs), this.journal.jsb) : undefined;
          if (parsed) {
            pending.push({ ref, block: b, role: journalRole(parsed, jb) });
            continue;
          }
          const descs = (await this.descriptors()).get(jb) ?? [];
          // The descriptor that covers this journal block: the last one logged before this write, else the first after it.
          const d = descs.filter((x) => x.index <= ref.index).at(-1) ?? descs.find((x) => x.index > ref.index);
          if (d) pending.push({ ref, block: b, homeOf: { block: d.home, sequence: d.sequence } });
          else pending.push({ ref, block: b, role: { kind: 'journal-data', text: `journal block ${jb} (no descriptor in the log covers it)` } });
          continue;
        }
        const role = staticRole(this.layout, b);
        pending.push({ ref, block: b, ...(role ? { role } : {}) });
      }
    }
    // Blocks without a fixed role, and the home blocks of journal copies: who owns them.
    const lookup = new Set<number>();
    for (const p of pending) {
      if (!p.role && !p.homeOf) lookup.add(p.block);
      if (p.homeOf && !staticRole(this.layout, p.homeOf.block)) lookup.add(p.homeOf.block);
    }
    const owned = await this.owners([...lookup]);
    const roleOf = (b: number) => staticRole(this.layout, b) ?? owned.get(b) ?? { kind: 'unowned' as const, text: `block ${b}, owned by no inode` };
    const resolved = pending.map((p) => {
      if (p.role) return { ...p, role: p.role };
      if (p.homeOf) {
        const jb = this.journal!.toJournal.get(p.block)!;
        const home = roleOf(p.homeOf.block);
        return {
          ...p,
          role: {
            kind: 'journal-data' as const,
            text: `journal block ${jb}: transaction ${p.homeOf.sequence}'s copy of block ${p.homeOf.block} (${home.text})`,
            transaction: p.homeOf.sequence,
            home: { block: p.homeOf.block, role: home },
          },
        };
      }
      return { ...p, role: roleOf(p.block) };
    });
    return refs.map((ref) => {
      const parts: WritePart[] = [];
      for (const p of resolved.filter((x) => x.ref === ref)) {
        const prev = parts.at(-1);
        if (prev && prev.role.kind === p.role.kind && prev.role.kind !== 'journal-data' && prev.role.text === p.role.text && prev.blocks[1] + 1 === p.block) prev.blocks[1] = p.block;
        else parts.push({ blocks: [p.block, p.block], role: p.role });
      }
      const summary = parts.map((p) => `${p.blocks[0] === p.blocks[1] ? `block ${p.blocks[0]}` : `blocks ${p.blocks[0]}-${p.blocks[1]}`}: ${p.role.text}`).join('; ');
      return { ref, parts, summary };
    });
  }

  /** icheck on the state image (then the base for what it does not find), ncheck and stat of the owners. */
  private async owners(blocks: number[]): Promise<Map<number, BlockRole>> {
    const out = new Map<number, BlockRole>();
    if (!blocks.length) return out;
    const images = [this.stateImage, ...(this.baseImage ? [this.baseImage] : [])];
    let left = blocks;
    for (const [n, image] of images.entries()) {
      if (!left.length) break;
      const [ic] = await debugfsBatch(image, [`icheck ${left.join(' ')}`]);
      const owners = parseIcheck(ic ?? '');
      const inos = [...new Set([...owners.values()].filter((x): x is number => x !== undefined))];
      const outs = inos.length ? await debugfsBatch(image, [`ncheck ${inos.join(' ')}`, ...inos.map((i) => `stat <${i}>`)]) : [];
      const paths = parseNcheck(outs[0] ?? '');
      const stats = new Map(inos.map((ino, k) => [ino, outs[k + 1] ?? '']));
      const where = n === 0 ? '' : ' in the base image';
      for (const b of left) {
        const ino = owners.get(b);
        if (ino === undefined) continue;
        const stat = stats.get(ino) ?? '';
        const path = paths.get(ino);
        const who = `inode ${ino}${path ? ` (${path})` : ''}`;
        const run = parseBlockMap(stat).find((r) => b >= r.physical && b < r.physical + r.count);
        const isDir = /Type:\s*directory/.test(stat);
        let role: BlockRole;
        if (run && (run.kind === 'IND' || run.kind === 'DIND' || run.kind === 'TIND')) role = { kind: 'indirect', text: `${run.kind} block of ${who}${where}`, ino };
        else if (run?.kind === 'ETB') role = { kind: 'extent-index', text: `extent tree block (level ${run.level}) of ${who}${where}`, ino };
        else if (isDir) role = { kind: 'directory', text: `directory block of ${who}${where}`, ino };
        else role = { kind: 'data', text: `data of ${who}${run?.logical !== undefined ? `, file block ${run.logical + (b - run.physical)}` : ''}${where}`, ino };
        if (path) role.path = path;
        out.set(b, role);
      }
      left = left.filter((b) => !out.has(b));
    }
    return out;
  }
}

function journalRole(p: JournalBlock, jb: number): BlockRole {
  switch (p.type) {
    case 'descriptor':
      return {
        kind: 'jbd2-descriptor',
        text: `jbd2 descriptor block (journal block ${jb}, transaction ${p.sequence}, ${p.tags.length} tag${p.tags.length === 1 ? '' : 's'}: blocks ${p.tags.map((t) => t.homeBlock).join(', ')})`,
        transaction: p.sequence,
      };
    case 'commit':
      return { kind: 'jbd2-commit', text: `jbd2 commit block (journal block ${jb}, transaction ${p.sequence})`, transaction: p.sequence };
    case 'revoke':
      return { kind: 'jbd2-revoke', text: `jbd2 revoke block (journal block ${jb}, transaction ${p.sequence}, revokes ${p.revoked.join(', ') || 'nothing'})`, transaction: p.sequence };
    case 'superblock':
      return { kind: 'jbd2-superblock', text: `jbd2 superblock (journal block ${jb})` };
    case 'fast-commit':
      return { kind: 'jbd2-fast-commit', text: `jbd2 fast-commit block (journal block ${jb})`, transaction: p.sequence };
  }
}
