import { fstatSync } from 'node:fs';
import { crc32cLe } from '../util/crc32c.ts';
import { readFullySync } from '../util/fd-io.ts';

/**
 * Inodes read from an ext2/3/4 image in this process, as `debugfs -R stat`
 * reports them: the path looked up as ext2fs_namei does (a linear scan of
 * each directory's blocks, first match), the inode's fields, and its block
 * map printed in debugfs's words (block-mapped: ranges, (IND)/(DIND)/(TIND)
 * before what they point to; extents: (ETBn) before the leaves,
 * [u] for unwritten).
 *
 * Why: the content oracle stats every file of every crash state, and a
 * debugfs process for it was about a tenth of a write-log state's CPU.
 *
 * It does not guess. What it does not read exactly as debugfs would (a
 * checksum that does not match, a directory entry, extent header or
 * indirect block debugfs would stop at, inline data, htree blocks under
 * metadata_csum, a feature it does not know, a device file) throws
 * AskDebugfsError, and the caller asks debugfs for the whole image: on a
 * damaged image the findings stay debugfs's. It is stricter than debugfs
 * wherever that was simpler; stricter only costs a debugfs run.
 * test/image/inode-reader.test.ts holds it to debugfs on real images.
 */
/**
 * What an inode's `stat` says, before what qcrash derives from it: the
 * fields parseDebugfsStat (debugfs.ts) reads from debugfs's text, and what this
 * reader reads from the inode. One function (inodeStatOf)
 * makes an InodeStat of either, so the two cannot derive differently.
 */
export interface StatFields {
  ino: number;
  /** The first word of debugfs's type ("regular", "directory", "symlink", ...). */
  type: string;
  flags: number;
  size: number;
  links: number;
  /** i_blocks in 512-byte units as debugfs prints "Blockcount". */
  blockcount: number;
  fastLinkTarget?: string;
  /** The BLOCKS: or EXTENTS: section: its heading and what follows it, up to the blank line that ends it. */
  map?: { heading: 'BLOCKS' | 'EXTENTS'; body: string };
}

export class AskDebugfsError extends Error {
  constructor(
    readonly image: string,
    readonly reason: string,
  ) {
    super(`${image}: not read in process (${reason}); debugfs reads it`);
    this.name = 'AskDebugfsError';
  }
}

const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_EXTENTS = 0x40;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_FLEX_BG = 0x200;
const INCOMPAT_CSUM_SEED = 0x2000;
/** Incompat features whose structures this reader reads as libext2fs does; any other is debugfs's. */
const incompatKnown =
  INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG | INCOMPAT_CSUM_SEED;
const RO_COMPAT_GDT_CSUM = 0x10;
const RO_COMPAT_METADATA_CSUM = 0x400;
/** sparse_super, large_file, huge_file, gdt_csum, dir_nlink, extra_isize, quota, metadata_csum, project, orphan_present. */
const roCompatKnown = 0x1 | 0x2 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x400 | 0x2000 | 0x10000;

export const EXTENTS_FL = 0x80000;
export const INLINE_DATA_FL = 0x10000000;
const HUGE_FILE_FL = 0x40000;
/** Encrypted and casefolded directories are looked up by other rules. */
const LOOKUP_OTHERWISE_FL = 0x800 | 0x40000000;
const ROOT_INO = 2;
const EXT_MAGIC = 0xf30a;
const EXT_INIT_MAX_LEN = 32768;
const EXT_MAX_DEPTH = 5;

const S_IFMT = 0xf000;
const typeWords = new Map([
  [0x8000, 'regular'],
  [0x4000, 'directory'],
  [0xa000, 'symlink'],
  [0x1000, 'FIFO'],
  [0xc000, 'socket'],
]);

interface Geometry {
  blockSize: number;
  blocksCount: number;
  firstDataBlock: number;
  inodesCount: number;
  inodesPerGroup: number;
  inodeSize: number;
  inodeTableBlocks: number;
  inodeTables: number[];
  metadataCsum: boolean;
  csumSeed: number;
  imageBytes: number;
}

interface Inode {
  ino: number;
  raw: Buffer;
  mode: number;
  flags: number;
  size: number;
  generation: number;
}

export class InodeReader {
  private readonly inodes = new Map<number, Inode>();
  /** Directory inode -> its entries by name (latin1 of the name's bytes), the first of each name as a linear scan meets it. */
  private readonly dirs = new Map<number, Map<string, number>>();
  private readonly blockBuf: Buffer;

  private constructor(
    private readonly fd: number,
    private readonly image: string,
    private readonly g: Geometry,
  ) {
    this.blockBuf = Buffer.alloc(g.blockSize);
  }

  /** The superblock and group descriptors of the filesystem in `image` (open as `fd`), checked as libext2fs would open them and more. */
  static open(fd: number, image: string): InodeReader {
    const ask = (why: string) => new AskDebugfsError(image, why);
    const imageBytes = fstatSync(fd).size;
    const sb = Buffer.alloc(1024);
    if (readFullySync(fd, sb, 1024) !== 1024) throw ask('no superblock');
    if (sb.readUInt16LE(0x38) !== 0xef53) throw ask('no ext2/3/4 superblock magic');
    const incompat = sb.readUInt32LE(0x60);
    const roCompat = sb.readUInt32LE(0x64);
    if (incompat & ~incompatKnown) throw ask(`incompat features 0x${(incompat & ~incompatKnown).toString(16)}`);
    if (roCompat & ~roCompatKnown) throw ask(`ro_compat features 0x${(roCompat & ~roCompatKnown).toString(16)}`);
    const metadataCsum = (roCompat & RO_COMPAT_METADATA_CSUM) !== 0;
    if (roCompat & RO_COMPAT_GDT_CSUM) throw ask('uninit_bg group descriptor checksums');
    if (metadataCsum && (sb[0x175] !== 1 || crc32cLe(sb.subarray(0, 0x3fc)) !== sb.readUInt32LE(0x3fc)))
      throw ask('superblock checksum');
    const logBlock = sb.readUInt32LE(0x18);
    if (logBlock > 5 || sb.readUInt32LE(0x1c) !== logBlock) throw ask('block or cluster size');
    const blockSize = 1024 << logBlock;
    const rev = sb.readUInt32LE(0x4c);
    const inodeSize = rev === 0 ? 128 : sb.readUInt16LE(0x58);
    const blocksPerGroup = sb.readUInt32LE(0x20);
    const inodesPerGroup = sb.readUInt32LE(0x28);
    const firstDataBlock = sb.readUInt32LE(0x14);
    const sixtyFour = (incompat & INCOMPAT_64BIT) !== 0;
    const blocksCount = sb.readUInt32LE(0x04) + (sixtyFour ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
    const groups = Math.ceil((blocksCount - firstDataBlock) / Math.max(1, blocksPerGroup));
    const descSize = sixtyFour ? sb.readUInt16LE(0xfe) : 32;
    const sane =
      rev <= 1 &&
      sb.readUInt32LE(0x48) === 0 && // Linux: the OS-dependent fields are Linux's
      blocksPerGroup === blockSize * 8 &&
      inodesPerGroup > 0 &&
      inodesPerGroup <= blockSize * 8 &&
      inodeSize >= 128 &&
      inodeSize <= blockSize &&
      (inodeSize & (inodeSize - 1)) === 0 &&
      firstDataBlock === (blockSize === 1024 ? 1 : 0) &&
      blocksCount > firstDataBlock &&
      blocksCount * blockSize <= imageBytes &&
      sb.readUInt32LE(0) === groups * inodesPerGroup &&
      (!sixtyFour || (descSize >= 64 && descSize <= 1024 && (descSize & (descSize - 1)) === 0));
    if (!sane) throw ask('superblock geometry');
    const csumSeed = incompat & INCOMPAT_CSUM_SEED ? sb.readUInt32LE(0x270) : crc32cLe(sb.subarray(0x68, 0x78));
    const gdt = Buffer.alloc(groups * descSize);
    if (readFullySync(fd, gdt, (firstDataBlock + 1) * blockSize) !== gdt.length) throw ask('group descriptors');
    const inodeTables: number[] = [];
    for (let i = 0; i < groups; i++) {
      const d = gdt.subarray(i * descSize, (i + 1) * descSize);
      if (metadataCsum && groupDescCsum(csumSeed, i, d) !== d.readUInt16LE(0x1e)) throw ask(`group ${i} descriptor checksum`);
      inodeTables.push(d.readUInt32LE(0x08) + (descSize >= 64 ? d.readUInt32LE(0x28) * 2 ** 32 : 0));
    }
    const inodeTableBlocks = Math.ceil((inodesPerGroup * inodeSize) / blockSize);
    return new InodeReader(fd, image, {
      blockSize,
      blocksCount,
      firstDataBlock,
      inodesCount: sb.readUInt32LE(0),
      inodesPerGroup,
      inodeSize,
      inodeTableBlocks,
      inodeTables,
      metadataCsum,
      csumSeed,
      imageBytes,
    });
  }

  /** What debugfs's `stat PATH` would report; undefined where it says the file is not found. */
  stat(path: string): StatFields | undefined {
    const ino = this.lookupPath(path);
    if (ino === undefined) return undefined;
    const inode = this.inode(ino);
    const type = typeWords.get(inode.mode & S_IFMT);
    if (!type) throw this.ask(`inode ${ino}: a device or unknown file type`);
    if (inode.flags & INLINE_DATA_FL) throw this.ask(`inode ${ino}: inline data`);
    // i_blocks counted in filesystem blocks, not sectors: how debugfs prints that is not held to it here.
    if (inode.flags & HUGE_FILE_FL) throw this.ask(`inode ${ino}: huge_file block count`);
    const r = inode.raw;
    const fields: StatFields = {
      ino,
      type,
      flags: inode.flags,
      size: inode.size,
      links: r.readUInt16LE(0x1a),
      blockcount: r.readUInt32LE(0x1c) + r.readUInt16LE(0x74) * 2 ** 32,
    };
    // ext2fs_is_fast_symlink (1.47): a symlink whose target fits in i_block.
    if (type === 'symlink' && inode.size > 0 && inode.size < 60) return { ...fields, fastLinkTarget: fastLink(this, inode) };
    if (inode.flags & EXTENTS_FL) return { ...fields, map: { heading: 'EXTENTS', body: this.extentMap(inode).text } };
    return { ...fields, map: { heading: 'BLOCKS', body: this.blockMap(inode).text } };
  }

  ask(reason: string): AskDebugfsError {
    return new AskDebugfsError(this.image, reason);
  }

  /** ext2fs_namei without following the last component: "/" is the root; anything but a plain absolute path is debugfs's. */
  private lookupPath(path: string): number | undefined {
    if (path === '/') return ROOT_INO;
    const parts = path.split('/');
    if (parts[0] !== '' || parts.slice(1).some((p) => p === '')) throw this.ask(`path ${JSON.stringify(path)}`);
    let dir = ROOT_INO;
    for (const [i, name] of parts.slice(1).entries()) {
      const ino = this.entries(dir).get(Buffer.from(name, 'utf8').toString('latin1'));
      if (ino === undefined) return undefined;
      if (i === parts.length - 2) return ino;
      // namei follows a symlink met on the way: not done here.
      if ((this.inode(ino).mode & S_IFMT) === 0xa000) throw this.ask(`${path}: a symlink on the way`);
      dir = ino;
    }
    return undefined;
  }

  private inode(ino: number): Inode {
    const known = this.inodes.get(ino);
    if (known) return known;
    const g = this.g;
    if (ino < 1 || ino > g.inodesCount) throw this.ask(`inode number ${ino}`);
    const group = Math.floor((ino - 1) / g.inodesPerGroup);
    const table = g.inodeTables[group]!;
    if (table < g.firstDataBlock || table + g.inodeTableBlocks - 1 >= g.blocksCount)
      throw this.ask(`group ${group}'s inode table`);
    const raw = Buffer.alloc(g.inodeSize);
    const at = table * g.blockSize + ((ino - 1) % g.inodesPerGroup) * g.inodeSize;
    if (readFullySync(this.fd, raw, at) !== raw.length) throw this.ask(`inode ${ino} beyond the image`);
    if (g.metadataCsum && !inodeCsumOk(g.csumSeed, ino, raw)) throw this.ask(`inode ${ino} checksum`);
    const inode = {
      ino,
      raw,
      mode: raw.readUInt16LE(0),
      flags: raw.readUInt32LE(0x20),
      size: raw.readUInt32LE(0x04) + raw.readUInt32LE(0x6c) * 2 ** 32,
      generation: raw.readUInt32LE(0x64),
    };
    this.inodes.set(ino, inode);
    return inode;
  }

  /** A directory's entries, as ext2fs_dir_iterate reads its blocks (every mapped block, in map order). */
  private entries(dirIno: number): Map<string, number> {
    const known = this.dirs.get(dirIno);
    if (known) return known;
    const dir = this.inode(dirIno);
    if ((dir.mode & S_IFMT) !== 0x4000) throw this.ask(`inode ${dirIno} is looked in but is not a directory`);
    if (dir.flags & (INLINE_DATA_FL | LOOKUP_OTHERWISE_FL))
      throw this.ask(`directory ${dirIno}: inline, encrypted or casefolded`);
    const map = dir.flags & EXTENTS_FL ? this.extentMap(dir, true) : this.blockMap(dir, true);
    if (map.unwritten) throw this.ask(`directory ${dirIno}: unwritten extents`);
    const byName = new Map<string, number>();
    for (const block of map.dataBlocks) this.dirBlockEntries(dir, block, byName);
    this.dirs.set(dirIno, byName);
    return byName;
  }

  /** One directory block's live entries into `byName` (the first of a name kept), checked as ext2fs_process_dir_block and ext2fs_read_dir_block4 check it. */
  private dirBlockEntries(dir: Inode, block: number, byName: Map<string, number>): void {
    const B = this.g.blockSize;
    const b = this.readBlock(block, `directory ${dir.ino}`);
    if (this.g.metadataCsum && !dirBlockCsumOk(this.g.csumSeed, dir, b))
      throw this.ask(`directory ${dir.ino} block ${block} checksum or htree node`);
    for (let off = 0; off < B - 8;) {
      const ino = b.readUInt32LE(off);
      const recLen = b.readUInt16LE(off + 4);
      const nameLen = b[off + 6]!;
      if (off + recLen > B || recLen < 8 || recLen % 4 !== 0 || nameLen + 8 > recLen)
        throw this.ask(`directory ${dir.ino} block ${block}: a corrupt entry at ${off}`);
      if (ino !== 0) {
        const name = b.toString('latin1', off + 8, off + 8 + nameLen);
        if (!byName.has(name)) byName.set(name, ino);
      }
      off += recLen;
    }
  }

  private readBlock(block: number, what: string): Buffer {
    const g = this.g;
    if (block < g.firstDataBlock || block >= g.blocksCount) throw this.ask(`${what}: block ${block} outside the filesystem`);
    const b = this.blockBuf;
    if (readFullySync(this.fd, b, block * g.blockSize) !== b.length) throw this.ask(`${what}: block ${block} beyond the image`);
    return b;
  }

  /** ext2fs_block_iterate3 over a block-mapped inode as debugfs's dump_blocks prints it; `listBlocks`: its data blocks too (a directory's). */
  private blockMap(inode: Inode, listBlocks = false): MapListing {
    const limit = this.g.blockSize / 4;
    const out = new MapPrinter(listBlocks);
    const iBlock = (i: number) => inode.raw.readUInt32LE(0x28 + 4 * i);
    for (let i = 0; i < 12; i++) if (iBlock(i)) out.data(i, iBlock(i));
    const walk = (ptr: number, level: number, first: number, label: string): void => {
      out.index(label, ptr);
      // A copy: walking a child reads into the same block buffer.
      const entries = Buffer.from(this.readBlock(ptr, `inode ${inode.ino} (${label})`));
      const span = limit ** (level - 1);
      for (let i = 0; i < limit; i++) {
        const p = entries.readUInt32LE(4 * i);
        if (!p) continue;
        if (level === 1) out.data(first + i, p);
        else walk(p, level - 1, first + i * span, level === 3 ? 'DIND' : 'IND');
      }
    };
    const labels = ['IND', 'DIND', 'TIND'];
    let first = 12;
    for (let level = 1; level <= 3; level++) {
      const ptr = iBlock(11 + level);
      if (ptr) walk(ptr, level, first, labels[level - 1]!);
      first += limit ** level;
    }
    return out.blockListing();
  }

  /** The extent tree as debugfs's dump_extents prints it: pre-order, index entries as (ETBlevel); `listBlocks` as blockMap's. */
  private extentMap(inode: Inode, listBlocks = false): MapListing {
    const out = new MapPrinter(listBlocks);
    const root = inode.raw.subarray(0x28, 0x28 + 60);
    const depth = this.extentHeader(root, 60, inode, 'i_block');
    if (depth > EXT_MAX_DEPTH) throw this.ask(`inode ${inode.ino}: extent depth ${depth}`);
    const visit = (node: Buffer, level: number): void => {
      const entries = node.readUInt16LE(2);
      for (let i = 0; i < entries; i++) {
        const e = node.subarray(12 + 12 * i, 24 + 12 * i);
        if (level < depth) {
          const child = e.readUInt32LE(4) + e.readUInt16LE(8) * 2 ** 32;
          out.index(`ETB${level}`, child);
          const block = Buffer.from(this.readBlock(child, `inode ${inode.ino} extent block`));
          if (
            this.extentHeader(block, this.g.blockSize, inode, `block ${child}`) !== depth - level - 1 ||
            block.readUInt16LE(2) === 0
          )
            throw this.ask(`inode ${inode.ino}: extent block ${child} at the wrong depth or empty`);
          if (this.g.metadataCsum && !extentBlockCsumOk(this.g.csumSeed, inode, block))
            throw this.ask(`inode ${inode.ino}: extent block ${child} checksum`);
          visit(block, level + 1);
        } else {
          const raw = e.readUInt16LE(4);
          const unwritten = raw > EXT_INIT_MAX_LEN;
          const len = unwritten ? raw - EXT_INIT_MAX_LEN : raw;
          if (len) out.extent(e.readUInt32LE(0), e.readUInt16LE(6) * 2 ** 32 + e.readUInt32LE(8), len, unwritten);
        }
      }
    };
    visit(root, 0);
    return out.extentListing();
  }

  /** ext2fs_extent_header_verify; the node's depth. */
  private extentHeader(node: Buffer, size: number, inode: Inode, where: string): number {
    const depth = node.readUInt16LE(6);
    const max = Math.floor((size - 12) / 12);
    const ehMax = node.readUInt16LE(4);
    if (node.readUInt16LE(0) !== EXT_MAGIC || node.readUInt16LE(2) > ehMax || ehMax > max || ehMax < max - 2)
      throw this.ask(`inode ${inode.ino}: extent header in ${where}`);
    return depth;
  }
}

/** A fast symlink's target as debugfs prints it ("%.*s": up to a NUL); one the parser of debugfs's text could read otherwise is debugfs's. */
function fastLink(reader: InodeReader, inode: Inode): string {
  const bytes = inode.raw.subarray(0x28, 0x28 + inode.size);
  const nul = bytes.indexOf(0);
  const target = nul >= 0 ? bytes.subarray(0, nul) : bytes;
  if (target.some((c) => c < 0x20 || c >= 0x7f)) throw reader.ask(`inode ${inode.ino}: a symlink target not plain ASCII`);
  return target.toString('latin1');
}

interface MapListing {
  /** The section's body as debugfs prints it, without the heading. */
  text: string;
  /** The data blocks in the order listed, when asked for (a directory is read in it; a file's, thousands a state, are not needed). */
  dataBlocks: number[];
  unwritten: boolean;
}

/** debugfs's list_blocks_proc and dump_extents: ranges where logical and physical blocks both continue, index blocks on their own. */
class MapPrinter {
  private readonly parts: string[] = [];
  private readonly listed: number[] = [];

  constructor(private readonly listBlocks: boolean) {}
  private run: { l0: number; p0: number; l: number; p: number } | undefined;
  private unwritten = false;

  data(logical: number, physical: number): void {
    if (this.listBlocks) this.listed.push(physical);
    const r = this.run;
    if (r && r.p + 1 === physical && r.l + 1 === logical) {
      r.l = logical;
      r.p = physical;
      return;
    }
    this.finish();
    this.run = { l0: logical, p0: physical, l: logical, p: physical };
  }

  index(label: string, physical: number): void {
    this.finish();
    this.parts.push(`(${label}):${physical}`);
  }

  extent(logical: number, physical: number, len: number, unwritten: boolean): void {
    const u = unwritten ? '[u]' : '';
    this.parts.push(
      len === 1 ? `(${logical}${u}):${physical}` : `(${logical}-${logical + len - 1}${u}):${physical}-${physical + len - 1}`,
    );
    if (this.listBlocks) for (let i = 0; i < len; i++) this.listed.push(physical + i);
    if (unwritten) this.unwritten = true;
  }

  private finish(): void {
    const r = this.run;
    if (!r) return;
    this.parts.push(r.l0 === r.l ? `(${r.l0}):${r.p0}` : `(${r.l0}-${r.l}):${r.p0}-${r.p}`);
    this.run = undefined;
  }

  /** dump_blocks' line of ranges (the "TOTAL: n" line after it is not part of the map parseDebugfsStat keeps). */
  blockListing(): MapListing {
    this.finish();
    return { text: this.parts.join(', '), dataBlocks: this.listed, unwritten: false };
  }

  extentListing(): MapListing {
    return { text: this.parts.join(', '), dataBlocks: this.listed, unwritten: this.unwritten };
  }
}

const le32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

/** The checksum seed of an inode's metadata: crc32c(fs seed, inode number, generation). */
function inodeSeed(fsSeed: number, ino: number, generation: number): number {
  return crc32cLe(le32(generation), crc32cLe(le32(ino), fsSeed));
}

/** ext2fs_group_desc_csum under metadata_csum. */
function groupDescCsum(seed: number, group: number, desc: Buffer): number {
  const d = Buffer.from(desc);
  d.writeUInt16LE(0, 0x1e);
  return crc32cLe(d, crc32cLe(le32(group), seed)) & 0xffff;
}

/** ext2fs_inode_csum_verify: over the whole on-disk inode with its checksum fields zeroed; an all-zero base inode passes. */
function inodeCsumOk(seed: number, ino: number, raw: Buffer): boolean {
  const hasHi = raw.length > 128 && raw.readUInt16LE(0x80) >= 4;
  const provided = raw.readUInt16LE(0x7c) + (hasHi ? raw.readUInt16LE(0x82) * 0x10000 : 0);
  const r = Buffer.from(raw);
  r.writeUInt16LE(0, 0x7c);
  if (hasHi) r.writeUInt16LE(0, 0x82);
  let crc = crc32cLe(r, inodeSeed(seed, ino, raw.readUInt32LE(0x64)));
  if (!hasHi) crc &= 0xffff;
  if (crc === provided) return true;
  return raw.subarray(0, 128).every((c) => c === 0);
}

/** A leaf directory block's tail checksum (ext2fs_dirent_csum_verify); a block without the tail (an htree node) is not verified here. */
function dirBlockCsumOk(seed: number, dir: Inode, b: Buffer): boolean {
  const tail = b.length - 12;
  if (b.readUInt32LE(tail) !== 0 || b.readUInt16LE(tail + 4) !== 12 || b.readUInt16LE(tail + 6) !== 0xde00) return false;
  // __get_dirent_tail: the entries must tile the block up to the tail.
  let off = 0;
  while (off < tail) {
    const recLen = b.readUInt16LE(off + 4);
    if (recLen < 8 || recLen % 4 !== 0) return false;
    off += recLen;
  }
  if (off !== tail) return false;
  return crc32cLe(b.subarray(0, tail), inodeSeed(seed, dir.ino, dir.generation)) === b.readUInt32LE(tail + 8);
}

/** ext2fs_extent_block_csum_verify: the tail after eh_max entries. */
function extentBlockCsumOk(seed: number, inode: Inode, block: Buffer): boolean {
  const tail = 12 + 12 * block.readUInt16LE(4);
  if (tail + 4 > block.length) return false;
  return crc32cLe(block.subarray(0, tail), inodeSeed(seed, inode.ino, inode.generation)) === block.readUInt32LE(tail);
}
