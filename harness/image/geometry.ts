import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';

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
  /** Inclusive block ranges of this group's metadata, wherever they lie, with what they are. */
  metadata: Array<{ what: string; first: number; last: number }>;
}

export async function readGeometry(image: string): Promise<FsGeometry> {
  const r = await runOk(await tool('dumpe2fs'), [image]);
  return parseDumpe2fs(r.stdout);
}

/** Parse `dumpe2fs IMAGE` (e2fsprogs 1.47): the header fields qcrash needs and every group. */
export function parseDumpe2fs(text: string): FsGeometry {
  const field = (name: string): string | undefined => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim();
  const num = (name: string): number => {
    const v = field(name);
    if (v === undefined || !/^\d+$/.test(v)) throw new Error(`dumpe2fs output lacks "${name}"`);
    return Number(v);
  };
  const groups: GroupInfo[] = [];
  const free: Array<[number, number]> = [];
  let g: GroupInfo | undefined;
  const range = (s: string): [number, number] => {
    const [a, b] = s.split('-').map(Number);
    return [a!, b ?? a!];
  };
  for (const line of text.split('\n')) {
    const head = /^Group (\d+): \(Blocks (\d+)-(\d+)\)/.exec(line);
    if (head) {
      g = { index: Number(head[1]), first: Number(head[2]), last: Number(head[3]), metadata: [] };
      groups.push(g);
      continue;
    }
    if (!g) continue;
    const add = (what: string, s: string): void => {
      const [first, last] = range(s);
      g!.metadata.push({ what: `group ${g!.index}'s ${what}`, first, last });
    };
    for (const m of line.matchAll(/(Primary superblock|Backup superblock) at (\d+)/g)) add(m[1]!.toLowerCase(), m[2]!);
    for (const m of line.matchAll(/Group descriptors at (\d+-\d+)/g)) add('group descriptors', m[1]!);
    for (const m of line.matchAll(/Reserved GDT blocks at (\d+-\d+)/g)) add('reserved GDT blocks', m[1]!);
    for (const m of line.matchAll(/(Block bitmap|Inode bitmap) at (\d+)/g)) add(m[1]!.toLowerCase(), m[2]!);
    for (const m of line.matchAll(/Inode table at (\d+-\d+)/g)) add('inode table', m[1]!);
    const f = /^\s+Free blocks: (.*)$/.exec(line);
    if (f) {
      for (const part of f[1]!.split(',').map((s) => s.trim()).filter(Boolean)) {
        const [a, b] = range(part);
        const last = free.at(-1);
        if (last && last[1] + 1 === a) last[1] = b;
        else free.push([a, b]);
      }
    }
  }
  const features = (field('Filesystem features') ?? '').split(/\s+/).filter(Boolean);
  return {
    blockSize: num('Block size'),
    blocksCount: num('Block count'),
    firstDataBlock: num('First block'),
    blocksPerGroup: num('Blocks per group'),
    features,
    flexBgSize: features.includes('flex_bg') ? Number(field('Flex block group size') ?? 0) : 0,
    groups,
    free,
  };
}

/** What holds block `b` after mkfs, in words, for an error message. */
export function describeBlock(geo: FsGeometry, b: number): string {
  if (b < geo.firstDataBlock || b >= geo.blocksCount) return `outside the filesystem (blocks ${geo.firstDataBlock}-${geo.blocksCount - 1})`;
  for (const g of geo.groups) for (const m of g.metadata) if (b >= m.first && b <= m.last) return m.what;
  const group = geo.groups.find((g) => b >= g.first && b <= g.last);
  return `in use after mkfs in group ${group?.index ?? '?'} (the journal, a directory or another file of the recipe)`;
}

/** Groups that hold a superblock copy (sparse_super: 0, 1 and powers of 3, 5 and 7). */
export function backupGroups(geo: FsGeometry): number[] {
  return geo.groups.filter((g) => g.metadata.some((m) => /superblock/.test(m.what) && m.first >= g.first && m.first <= g.last)).map((g) => g.index);
}
