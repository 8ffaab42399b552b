import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { InfraError } from '../util/errors.ts';

/**
 * Where an ext4 image's blocks are, from `dumpe2fs`: block groups, the
 * metadata each group's descriptor points at (which flex_bg may place in
 * another group), and the free blocks. The layout planner places files in
 * the free blocks and names the metadata that is in the way when it cannot.
 */
export interface FsGeometry {
  blockSize: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  /** The journal's inode; absent without a journal. */
  journalInode?: number;
  features: string[];
  /** Groups per flex group; 0 without flex_bg. */
  flexBgSize: number;
  groups: GroupInfo[];
  /** Free blocks as inclusive ranges, ascending. */
  free: Array<[number, number]>;
}

export interface GroupInfo {
  index: number;
  first: number;
  last: number;
  /** Primary or backup superblock. */
  superblock?: number;
  gdt?: [number, number];
  reservedGdt?: [number, number];
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: [number, number];
  /** Inclusive block ranges of this group's metadata, wherever they lie, with what they are. */
  metadata: Array<{ what: string; first: number; last: number }>;
}

export async function readGeometry(image: string): Promise<FsGeometry> {
  const r = await runOk(await tool('dumpe2fs'), [image], { env: { LANG: 'C', LC_ALL: 'C' } });
  return parseDumpe2fs(r.stdout);
}

/** Parse `dumpe2fs IMAGE` (e2fsprogs 1.47): the header fields qcrash needs and every group. */
export function parseDumpe2fs(text: string): FsGeometry {
  const need = (label: string): number => {
    const v = headerNumber(text, label);
    if (v === undefined) throw new InfraError(`dumpe2fs output has no "${label}:" line`);
    return v;
  };
  const chunks = text.split(/^(?=Group \d+: \(Blocks )/m).slice(1);
  const groups = chunks.map(parseGroup);
  const features = (headerField(text, 'Filesystem features') ?? '').split(/\s+/).filter(Boolean);
  const journalInode = headerNumber(text, 'Journal inode');
  return {
    blockSize: need('Block size'),
    blocksCount: need('Block count'),
    firstDataBlock: need('First block'),
    blocksPerGroup: need('Blocks per group'),
    inodesPerGroup: need('Inodes per group'),
    inodeSize: need('Inode size'),
    ...(journalInode !== undefined ? { journalInode } : {}),
    features,
    flexBgSize: features.includes('flex_bg') ? (headerNumber(text, 'Flex block group size') ?? 0) : 0,
    groups,
    free: freeRanges(chunks),
  };
}

function headerField(text: string, label: string): string | undefined {
  return new RegExp(`^${label}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim();
}

function headerNumber(text: string, label: string): number | undefined {
  const m = /^\d+/.exec(headerField(text, label) ?? '');
  return m ? Number(m[0]) : undefined;
}

const range = (s: string): [number, number] => {
  const [a, b] = s.split('-').map(Number);
  return [a!, b ?? a!];
};

/** One "Group N: (Blocks a-b)" section: where its superblock, descriptors, bitmaps and inode table are. */
function parseGroup(chunk: string): GroupInfo {
  const head = /^Group (\d+): \(Blocks (\d+)-(\d+)\)/.exec(chunk)!;
  const sb = /(Primary|Backup) superblock at (\d+)/.exec(chunk);
  const gdt = /Group descriptors at (\d+(?:-\d+)?)/.exec(chunk);
  const rgdt = /Reserved GDT blocks at (\d+(?:-\d+)?)/.exec(chunk);
  const bb = /Block bitmap at (\d+)/.exec(chunk);
  const ib = /Inode bitmap at (\d+)/.exec(chunk);
  const it = /Inode table at (\d+(?:-\d+)?)/.exec(chunk);
  if (!bb || !ib || !it) throw new InfraError(`dumpe2fs: group ${head[1]} has no bitmap or inode table line`);
  const index = Number(head[1]);
  const g: GroupInfo = {
    index,
    first: Number(head[2]),
    last: Number(head[3]),
    ...(sb ? { superblock: Number(sb[2]) } : {}),
    ...(gdt ? { gdt: range(gdt[1]!) } : {}),
    ...(rgdt ? { reservedGdt: range(rgdt[1]!) } : {}),
    blockBitmap: Number(bb[1]),
    inodeBitmap: Number(ib[1]),
    inodeTable: range(it[1]!),
    metadata: [],
  };
  const add = (what: string, [first, last]: [number, number]): void => {
    g.metadata.push({ what: `group ${index}'s ${what}`, first, last });
  };
  if (sb) add(`${sb[1]!.toLowerCase()} superblock`, [g.superblock!, g.superblock!]);
  if (g.gdt) add('group descriptors', g.gdt);
  if (g.reservedGdt) add('reserved GDT blocks', g.reservedGdt);
  add('block bitmap', [g.blockBitmap, g.blockBitmap]);
  add('inode bitmap', [g.inodeBitmap, g.inodeBitmap]);
  add('inode table', g.inodeTable);
  return g;
}

/** Every group's "Free blocks:" line, as ascending ranges with adjacent ones joined. */
function freeRanges(chunks: string[]): Array<[number, number]> {
  const free: Array<[number, number]> = [];
  for (const chunk of chunks) {
    const f = /^[ \t]+Free blocks: (.*)$/m.exec(chunk);
    if (!f) continue;
    for (const part of f[1]!
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const [a, b] = range(part);
      const last = free.at(-1);
      if (last && last[1] + 1 === a) last[1] = b;
      else free.push([a, b]);
    }
  }
  return free;
}

/** What holds block `b` after mkfs, in words, for an error message. */
export function describeBlock(geo: FsGeometry, b: number): string {
  if (b < geo.firstDataBlock || b >= geo.blocksCount)
    return `outside the filesystem (blocks ${geo.firstDataBlock}-${geo.blocksCount - 1})`;
  for (const g of geo.groups) for (const m of g.metadata) if (b >= m.first && b <= m.last) return m.what;
  const group = geo.groups.find((g) => b >= g.first && b <= g.last);
  return `in use after mkfs in group ${group?.index ?? '?'} (the journal, a directory or another file of the recipe)`;
}

/** Groups that hold a superblock copy (sparse_super: 0, 1 and powers of 3, 5 and 7). */
export function backupGroups(geo: FsGeometry): number[] {
  return geo.groups
    .filter((g) => g.metadata.some((m) => /superblock/.test(m.what) && m.first >= g.first && m.first <= g.last))
    .map((g) => g.index);
}
