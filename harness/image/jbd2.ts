import { openSync, closeSync } from 'node:fs';
import { readFullySync } from '../util/fd-io.ts';
import { debugfsBatch, parseDebugfsStat } from './debugfs.ts';
import { parseBlockMap } from './block-map.ts';
import type { FsGeometry } from './geometry.ts';

/**
 * The jbd2 journal's on-disk format (big-endian): its superblock, the
 * header every descriptor, commit and revoke block starts with, and where
 * the journal's blocks sit in the filesystem.
 */

export const JBD2_MAGIC = 0xc03b3998;
export const jbd2BlockTypes = {
  1: 'descriptor',
  2: 'commit',
  3: 'superblock-v1',
  4: 'superblock-v2',
  5: 'revoke',
  6: 'fast-commit',
} as const;
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

/** Where the journal is: its superblock and which filesystem block holds which journal block. */
export interface JournalLocation {
  jsb: JournalSuperblock;
  /** fs block -> journal block. */
  toJournal: Map<number, number>;
}

/** The journal inode's block map and superblock on an image; undefined without a journal or with no valid superblock. */
export async function readJournalLocation(image: string, geo: FsGeometry): Promise<JournalLocation | undefined> {
  if (!geo.journalInode) return undefined;
  const [stat] = await debugfsBatch(image, [`stat <${geo.journalInode}>`]);
  const toJournal = new Map<number, number>();
  for (const [logical, physical, count] of parseBlockMap(parseDebugfsStat(stat ?? '')?.map ?? '').data) {
    for (let i = 0; i < count; i++) toJournal.set(physical + i, logical + i);
  }
  const first = [...toJournal].find(([, j]) => j === 0)?.[0];
  const jsb = first !== undefined ? parseJournalSuperblock(readBlock(image, first, geo.blockSize)) : undefined;
  return jsb ? { jsb, toJournal } : undefined;
}

/** The journal block that holds the copy named by a descriptor's k-th tag (the log wraps from maxLen to first). */
export function taggedJournalBlock(jsb: JournalSuperblock, descriptorBlock: number, k: number): number {
  const target = descriptorBlock + 1 + k;
  return target >= jsb.maxLen ? jsb.first + (target - jsb.maxLen) : target;
}

function readBlock(path: string, block: number, blockSize: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(blockSize);
    readFullySync(fd, b, block * blockSize);
    return b;
  } finally {
    closeSync(fd);
  }
}
