import { createHash, hash } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { readFullySync } from '../../util/fd-io.ts';
import { entryKind, type LogEntry, type WriteLog } from './format.ts';

/**
 * What each write of a log put on the disk, reduced to hashes: a stable id
 * per write and a hash per sector, plus the base image's hash for every
 * sector the log touches. From these, the identity of any crash state (base
 * + some writes) is a sum computed without building the image
 * (states.ts uses it to check identical states once).
 *
 * A sector's hash covers its number and its bytes, so the identity of an
 * image is the sum (mod 2^128) of the hashes of the sectors where it differs
 * from the base: order-free, and updated in O(1) per sector written.
 */
const hashModulus = 1n << 128n;

export interface WriteDigest {
  entry: LogEntry;
  /**
   * Short hash of the sector number and the data written: the same write
   * gets the same id in any log, whatever its position (a state's name
   * built from ids survives a kernel that logs a few more writes before it).
   */
  contentId: string;
  /** Hash of each sector the write (or discard) sets, in order. */
  sectorHashes: bigint[];
}

export interface LogDigest {
  log: WriteLog;
  /** By entry index; only writes and discards have one. */
  writes: Map<number, WriteDigest>;
  /** The base image's hash of every sector the log touches (what the two functions below read). */
  baseHashes: ReadonlyMap<number, bigint>;
  /** Hash of each touched sector's bytes in the base image. */
  baseSectorHash(sector: number): bigint;
  /** The same, undefined for a sector the log never touches. */
  knownBaseSectorHash(sector: number): bigint | undefined;
}

/** The sector's number (8 bytes, little-endian) and then its bytes: what sectorHash hashes, assembled in one buffer. */
const sectorInput = Buffer.alloc(8 + 4096);

/**
 * sha1 of the sector's number and bytes, as a 128-bit number. One-shot
 * (crypto.hash) on one reused buffer: a Hash object and an 8-byte buffer
 * per sector were most of a log's digest (a 100 MiB log has 200,000
 * sectors).
 */
function sectorHash(sector: number, bytes: Buffer): bigint {
  const n = 8 + bytes.length;
  const input = n <= sectorInput.length ? sectorInput.subarray(0, n) : Buffer.alloc(n);
  input.writeBigUInt64LE(BigInt(sector), 0);
  bytes.copy(input, 8);
  const d = hash('sha1', input, 'buffer');
  return (d.readBigUInt64BE(0) << 64n) | d.readBigUInt64BE(8);
}

/** Hash every write of the log and the base sectors they cover. One pass over the log's data. */
export async function digestLog(log: WriteLog, basePath: string): Promise<LogDigest> {
  const ss = log.sectorSize;
  const writes = new Map<number, WriteDigest>();
  const base = new Map<number, bigint>();
  const zero = Buffer.alloc(ss);
  const logFd = openSync(log.path, 'r');
  const baseFd = openSync(basePath, 'r');
  try {
    for (const e of log.entries) {
      const kind = entryKind(e);
      if (kind !== 'write' && kind !== 'discard') continue;
      const data = Buffer.alloc(kind === 'write' ? e.dataBytes : 0);
      if (kind === 'write') readFullySync(logFd, data, e.dataOffset);
      const sectorHashes: bigint[] = [];
      for (let i = 0; i < e.nrSectors; i++)
        sectorHashes.push(sectorHash(e.sector + i, kind === 'write' ? data.subarray(i * ss, (i + 1) * ss) : zero));
      const id = createHash('sha256');
      const head = Buffer.alloc(9);
      head.writeBigUInt64LE(BigInt(e.sector));
      head[8] = kind === 'discard' ? 1 : 0;
      id.update(head);
      if (kind === 'write') id.update(data);
      else id.update(String(e.nrSectors));
      writes.set(e.index, { entry: e, contentId: id.digest('hex').slice(0, 8), sectorHashes });
      // The base's bytes of every sector this entry touches, read once.
      let missing = false;
      for (let i = 0; i < e.nrSectors && !missing; i++) missing = !base.has(e.sector + i);
      if (missing) {
        const b = Buffer.alloc(e.nrSectors * ss);
        // Past the base image's end reads as zeros (the buffer is zero-filled).
        readFullySync(baseFd, b, e.sector * ss);
        for (let i = 0; i < e.nrSectors; i++)
          if (!base.has(e.sector + i)) base.set(e.sector + i, sectorHash(e.sector + i, b.subarray(i * ss, (i + 1) * ss)));
      }
    }
  } finally {
    closeSync(logFd);
    closeSync(baseFd);
  }
  return logDigest(log, writes, base);
}

/** A LogDigest of its parts: each write's digest by entry index, and the base's hash of every sector the log touches. */
export function logDigest(log: WriteLog, writes: Map<number, WriteDigest>, base: Map<number, bigint>): LogDigest {
  return {
    log,
    writes,
    baseHashes: base,
    baseSectorHash: (s) => {
      const h = base.get(s);
      if (h === undefined) throw new Error(`digest: sector ${s} is not written by the log`);
      return h;
    },
    knownBaseSectorHash: (s) => base.get(s),
  };
}

/** A sector a program rewrote on an image: its bytes before and after. */
export interface SectorChange {
  sector: number;
  before: Buffer;
  after: Buffer;
}

/**
 * The identity of an image after a program rewrote some of its sectors (e2fsck's
 * journal replay, told by its undo file): the identity before (a state's key,
 * ImageIdentity's sum) moved by each changed sector's hashes. A sector the log
 * never touches held the base's bytes until the program wrote it, so its
 * bytes before are the base's.
 */
export function identityAfter(
  key: bigint,
  changes: Iterable<SectorChange>,
  knownBaseSectorHash: (sector: number) => bigint | undefined,
): bigint {
  let k = key;
  for (const c of changes) {
    const before = sectorHash(c.sector, c.before);
    const after = sectorHash(c.sector, c.after);
    const base = knownBaseSectorHash(c.sector) ?? before;
    k += (after === base ? 0n : after) - (before === base ? 0n : before);
  }
  return ((k % hashModulus) + hashModulus) % hashModulus;
}

/**
 * The identity of the working image as it advances along the log: for
 * every sector written so far its current hash, and the sum of the hashes
 * of the sectors that differ from the base.
 */
export class ImageIdentity {
  private readonly current = new Map<number, bigint>();
  private total = 0n;

  constructor(private readonly digest: LogDigest) {}

  /** The identity of the image now. */
  get key(): bigint {
    return this.total;
  }

  private term(sector: number, h: bigint): bigint {
    return h === this.digest.baseSectorHash(sector) ? 0n : h;
  }

  /** Hash of the sector on the image now. */
  hashAt(sector: number): bigint {
    return this.current.get(sector) ?? this.digest.baseSectorHash(sector);
  }

  apply(index: number): void {
    const w = this.digest.writes.get(index);
    if (!w) return;
    w.sectorHashes.forEach((h, i) => {
      const s = w.entry.sector + i;
      this.total = (this.total - this.term(s, this.hashAt(s)) + this.term(s, h) + hashModulus) % hashModulus;
      this.current.set(s, h);
    });
  }

  /** The identity the image would have with `writes` applied on top (the image itself is not changed). */
  keyWith(writes: ReadonlyArray<{ index: number; keepSectors?: number }>): bigint {
    const last = new Map<number, bigint>();
    for (const { index, keepSectors } of writes) {
      const w = this.digest.writes.get(index);
      if (!w) continue;
      const n = keepSectors ?? w.sectorHashes.length;
      for (let i = 0; i < n; i++) last.set(w.entry.sector + i, w.sectorHashes[i]!);
    }
    let k = this.total;
    for (const [s, h] of last) k += this.term(s, h) - this.term(s, this.hashAt(s));
    return ((k % hashModulus) + hashModulus) % hashModulus;
  }
}
