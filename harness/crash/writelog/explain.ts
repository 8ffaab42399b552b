import { debugfsBatch, parseDebugfsStat, parseIcheck, parseNcheck } from '../../image/debugfs.ts';
import { parseBlockMap, type BlockMap } from '../../image/block-map.ts';
import { readGeometry, type FsGeometry } from '../../image/geometry.ts';
import {
  parseJournalBlock,
  readJournalLocation,
  taggedJournalBlock,
  type JournalBlock,
  type JournalLocation,
} from '../../image/jbd2.ts';
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
export function staticRole(layout: FsGeometry, block: number): BlockRole | undefined {
  if (block < layout.firstDataBlock) return { kind: 'superblock', text: 'boot block / primary superblock' };
  // Not only the block's own group: with flex_bg a group's bitmaps and table live in another group's range.
  for (const g of layout.groups) {
    if (g.superblock === block)
      return {
        kind: 'superblock',
        text: `${g.index === 0 ? 'primary' : 'backup'} superblock (group ${g.index})`,
        group: g.index,
      };
    if (g.gdt && block >= g.gdt[0] && block <= g.gdt[1])
      return {
        kind: 'group-descriptors',
        text: `group descriptor table${g.index ? ` (backup in group ${g.index})` : ''}`,
        group: g.index,
      };
    if (g.reservedGdt && block >= g.reservedGdt[0] && block <= g.reservedGdt[1])
      return { kind: 'reserved-gdt', text: `reserved GDT block (group ${g.index})`, group: g.index };
    if (g.blockBitmap === block) return { kind: 'block-bitmap', text: `block bitmap of group ${g.index}`, group: g.index };
    if (g.inodeBitmap === block) return { kind: 'inode-bitmap', text: `inode bitmap of group ${g.index}`, group: g.index };
    if (block >= g.inodeTable[0] && block <= g.inodeTable[1]) {
      const perBlock = layout.blockSize / layout.inodeSize;
      const a = g.index * layout.inodesPerGroup + (block - g.inodeTable[0]) * perBlock + 1;
      const inodes: [number, number] = [a, a + perBlock - 1];
      return {
        kind: 'inode-table',
        text: `inode table of group ${g.index} (inodes ${inodes[0]}-${inodes[1]})`,
        group: g.index,
        inodes,
      };
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

/** A journal copy's origin: the descriptor tag that names the block it will be written back to. */
interface DescriptorTag {
  /** Log index of the write that holds the descriptor. */
  index: number;
  sequence: number;
  home: number;
}

/** One block of a write before owners are looked up: its role if known already, or the home block a journal copy stands for. */
interface PendingBlock {
  ref: WriteRef;
  block: number;
  role?: BlockRole;
  homeOf?: { block: number; sequence: number };
}

/**
 * Explains writes of one log against a state image (icheck/ncheck run
 * there; a block no inode owns there is looked up in the base image too,
 * e.g. an old indirect block the migration freed).
 */
export class WriteExplainer {
  private descriptorsByJournalBlock?: Map<number, DescriptorTag[]>;

  private constructor(
    readonly log: WriteLog,
    readonly layout: FsGeometry,
    private readonly journal: JournalLocation | undefined,
    readonly stateImage: string,
    readonly baseImage: string | undefined,
  ) {}

  static async create(log: WriteLog, stateImage: string, baseImage?: string): Promise<WriteExplainer> {
    const layout = await readGeometry(stateImage);
    const journal = await readJournalLocation(stateImage, layout);
    return new WriteExplainer(log, layout, journal, stateImage, baseImage);
  }

  /** Explain each write (by its ref); blocks no fixed role names are looked up with debugfs in one batch. */
  async explain(refs: readonly WriteRef[]): Promise<WriteExplanation[]> {
    const pending: PendingBlock[] = [];
    for (const ref of refs) pending.push(...(await this.classify(ref)));
    const owned = await this.owners(this.blocksToLookUp(pending));
    const roleOf = (b: number) =>
      staticRole(this.layout, b) ?? owned.get(b) ?? { kind: 'unowned' as const, text: `block ${b}, owned by no inode` };
    const resolved = pending.map((p) => ({ ref: p.ref, block: p.block, role: this.resolvedRole(p, roleOf) }));
    return refs.map((ref) =>
      explanation(
        ref,
        resolved.filter((x) => x.ref === ref),
      ),
    );
  }

  private fsBlocks(e: LogEntry): [number, number] {
    const bytes = e.sector * this.log.sectorSize;
    const first = Math.floor(bytes / this.layout.blockSize);
    const last = Math.floor((bytes + e.nrSectors * this.log.sectorSize - 1) / this.layout.blockSize);
    return [first, last];
  }

  /** The bytes a write holds for fs block `b`, or undefined when the write does not cover all of it. */
  private blockData(e: LogEntry, data: Buffer, b: number): Buffer | undefined {
    const bs = this.layout.blockSize;
    const off = b * bs - e.sector * this.log.sectorSize;
    return off >= 0 && off + bs <= data.length ? data.subarray(off, off + bs) : undefined;
  }

  /** Each block of one write: a fixed role, a jbd2 block, a journal copy of a home block, or a block to look up. */
  private async classify(ref: WriteRef): Promise<PendingBlock[]> {
    const e = this.log.entries[ref.index]!;
    const [first, last] = this.fsBlocks(e);
    const data = entryKind(e) === 'write' ? await this.log.readData(e) : Buffer.alloc(0);
    const out: PendingBlock[] = [];
    for (let b = first; b <= last; b++) {
      const jb = this.journal?.toJournal.get(b);
      if (jb !== undefined && this.journal) {
        out.push(await this.classifyJournalBlock(ref, b, jb, this.blockData(e, data, b)));
        continue;
      }
      const role = staticRole(this.layout, b);
      out.push({ ref, block: b, ...(role ? { role } : {}) });
    }
    return out;
  }

  /** A block inside the journal: a jbd2 block by its header, else the copy the covering descriptor names. */
  private async classifyJournalBlock(ref: WriteRef, b: number, jb: number, bytes: Buffer | undefined): Promise<PendingBlock> {
    const parsed = bytes ? parseJournalBlock(bytes, this.journal!.jsb) : undefined;
    if (parsed) return { ref, block: b, role: journalRole(parsed, jb) };
    const descs = (await this.descriptors()).get(jb) ?? [];
    // The descriptor that covers this journal block: the last one logged before this write, else the first after it.
    const d = descs.filter((x) => x.index <= ref.index).at(-1) ?? descs.find((x) => x.index > ref.index);
    if (d) return { ref, block: b, homeOf: { block: d.home, sequence: d.sequence } };
    return { ref, block: b, role: { kind: 'journal-data', text: `journal block ${jb} (no descriptor in the log covers it)` } };
  }

  /** Blocks without a fixed role, and the home blocks of journal copies: who owns them. */
  private blocksToLookUp(pending: readonly PendingBlock[]): number[] {
    const lookup = new Set<number>();
    for (const p of pending) {
      if (!p.role && !p.homeOf) lookup.add(p.block);
      if (p.homeOf && !staticRole(this.layout, p.homeOf.block)) lookup.add(p.homeOf.block);
    }
    return [...lookup];
  }

  private resolvedRole(p: PendingBlock, roleOf: (b: number) => BlockRole): BlockRole {
    if (p.role) return p.role;
    if (!p.homeOf) return roleOf(p.block);
    const jb = this.journal!.toJournal.get(p.block)!;
    const home = roleOf(p.homeOf.block);
    return {
      kind: 'journal-data',
      text: `journal block ${jb}: transaction ${p.homeOf.sequence}'s copy of block ${p.homeOf.block} (${home.text})`,
      transaction: p.homeOf.sequence,
      home: { block: p.homeOf.block, role: home },
    };
  }

  /** Every descriptor in the log: journal block -> the home blocks copied there (by which descriptor, in log order). */
  private async descriptors(): Promise<Map<number, DescriptorTag[]>> {
    if (this.descriptorsByJournalBlock) return this.descriptorsByJournalBlock;
    const map = new Map<number, DescriptorTag[]>();
    if (this.journal) {
      for (const e of this.log.entries) {
        for (const [target, tag] of await this.descriptorTagsIn(e, this.journal))
          map.set(target, [...(map.get(target) ?? []), tag]);
      }
    }
    this.descriptorsByJournalBlock = map;
    return map;
  }

  /** The tags of the descriptor blocks one write holds, each with the journal block its copy sits in. */
  private async descriptorTagsIn(e: LogEntry, j: JournalLocation): Promise<Array<[number, DescriptorTag]>> {
    if (entryKind(e) !== 'write') return [];
    const [first, last] = this.fsBlocks(e);
    if (![...Array(last - first + 1).keys()].some((k) => j.toJournal.has(first + k))) return [];
    const data = await this.log.readData(e);
    const out: Array<[number, DescriptorTag]> = [];
    for (let b = first; b <= last; b++) {
      const jb = j.toJournal.get(b);
      const bytes = jb === undefined ? undefined : this.blockData(e, data, b);
      if (jb === undefined || !bytes) continue;
      const parsed = parseJournalBlock(bytes, j.jsb);
      if (parsed?.type !== 'descriptor') continue;
      parsed.tags.forEach((t, k) =>
        out.push([taggedJournalBlock(j.jsb, jb, k), { index: e.index, sequence: parsed.sequence, home: t.homeBlock }]),
      );
    }
    return out;
  }

  /** icheck on the state image (then the base for what it does not find), ncheck and stat of the owners. */
  private async owners(blocks: number[]): Promise<Map<number, BlockRole>> {
    const out = new Map<number, BlockRole>();
    const images = [this.stateImage, ...(this.baseImage ? [this.baseImage] : [])];
    let left = blocks;
    for (const [n, image] of images.entries()) {
      if (!left.length) break;
      for (const [b, role] of await ownersIn(image, left, n === 0 ? '' : ' in the base image')) out.set(b, role);
      left = left.filter((b) => !out.has(b));
    }
    return out;
  }
}

/** The roles of the blocks inodes own on one image (`where` is appended to each text). */
async function ownersIn(image: string, blocks: number[], where: string): Promise<Map<number, BlockRole>> {
  const [ic] = await debugfsBatch(image, [`icheck ${blocks.join(' ')}`]);
  const owners = parseIcheck(ic ?? '');
  const inos = [...new Set([...owners.values()].filter((x): x is number => x !== undefined))];
  const outs = inos.length ? await debugfsBatch(image, [`ncheck ${inos.join(' ')}`, ...inos.map((i) => `stat <${i}>`)]) : [];
  const paths = parseNcheck(outs[0] ?? '');
  const stats = new Map(inos.map((ino, k) => [ino, outs[k + 1] ?? '']));
  const out = new Map<number, BlockRole>();
  for (const b of blocks) {
    const ino = owners.get(b);
    if (ino === undefined) continue;
    const stat = stats.get(ino) ?? '';
    out.set(b, ownedRole(b, ino, paths.get(ino), stat, where));
  }
  return out;
}

/** What block `b` is to inode `ino`, from the inode's `debugfs stat`: a map block, a directory block or file data. */
function ownedRole(b: number, ino: number, path: string | undefined, stat: string, where: string): BlockRole {
  const who = `inode ${ino}${path ? ` (${path})` : ''}`;
  const st = parseDebugfsStat(stat);
  const map = parseBlockMap(st?.map ?? '');
  const index = mapBlockKind(map, b);
  let role: BlockRole;
  if (index && /^(IND|DIND|TIND)$/.test(index)) role = { kind: 'indirect', text: `${index} block of ${who}${where}`, ino };
  else if (index?.startsWith('ETB'))
    role = { kind: 'extent-index', text: `extent tree block (level ${index.slice(3)}) of ${who}${where}`, ino };
  else if (st?.type === 'directory') role = { kind: 'directory', text: `directory block of ${who}${where}`, ino };
  else {
    const run = map.data.find(([, physical, count]) => b >= physical && b < physical + count);
    role = { kind: 'data', text: `data of ${who}${run ? `, file block ${run[0] + (b - run[1])}` : ''}${where}`, ino };
  }
  if (path) role.path = path;
  return role;
}

/** The kind of map block (IND, DIND, TIND, ETB0, ETB1...) block `b` is in a file's map, if it is one. */
function mapBlockKind(map: BlockMap, b: number): string | undefined {
  return map.index.find(([, physical]) => physical === b)?.[0];
}

/** Join a write's blocks into parts (adjacent blocks with the same fixed role), and say them in one line. */
function explanation(ref: WriteRef, blocks: ReadonlyArray<{ block: number; role: BlockRole }>): WriteExplanation {
  const parts: WritePart[] = [];
  for (const p of blocks) {
    const prev = parts.at(-1);
    if (
      prev &&
      prev.role.kind === p.role.kind &&
      prev.role.kind !== 'journal-data' &&
      prev.role.text === p.role.text &&
      prev.blocks[1] + 1 === p.block
    )
      prev.blocks[1] = p.block;
    else parts.push({ blocks: [p.block, p.block], role: p.role });
  }
  const summary = parts
    .map(
      (p) => `${p.blocks[0] === p.blocks[1] ? `block ${p.blocks[0]}` : `blocks ${p.blocks[0]}-${p.blocks[1]}`}: ${p.role.text}`,
    )
    .join('; ');
  return { ref, parts, summary };
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
      return {
        kind: 'jbd2-commit',
        text: `jbd2 commit block (journal block ${jb}, transaction ${p.sequence})`,
        transaction: p.sequence,
      };
    case 'revoke':
      return {
        kind: 'jbd2-revoke',
        text: `jbd2 revoke block (journal block ${jb}, transaction ${p.sequence}, revokes ${p.revoked.join(', ') || 'nothing'})`,
        transaction: p.sequence,
      };
    case 'superblock':
      return { kind: 'jbd2-superblock', text: `jbd2 superblock (journal block ${jb})` };
    case 'fast-commit':
      return { kind: 'jbd2-fast-commit', text: `jbd2 fast-commit block (journal block ${jb})`, transaction: p.sequence };
  }
}
