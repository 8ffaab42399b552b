import { readFileSync, rmSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../../util/atomic.ts';
import { digestLog, logDigest, type LogDigest, type WriteDigest } from './digest.ts';
import { entryKind, type WriteLog } from './format.ts';

/**
 * A log's digest kept beside it (`<log>.digest`). A run digests each unit's
 * log when it plans the unit's states and needs the digest again when it
 * checks them; the two are minutes apart, since every unit is recorded and
 * planned before the first is checked, and holding every unit's digest in
 * memory in between raised a run's peak RSS by 27 MiB. Hashing the log
 * again was the check's one serial step before its first state (1-2 ms of
 * the harness's CPU a state): reading the file back is a few milliseconds
 * a unit.
 *
 * The file is stamped with the log's and the base image's size and mtime;
 * a file that does not match them, or does not parse, or does not fit the
 * log's entries, is ignored and written again.
 */
const version = 1;
const HASH = 16;

interface Stamp {
  version: number;
  log: { size: number; mtimeMs: number };
  base: { path: string; size: number; mtimeMs: number };
}

function stampOf(log: WriteLog, basePath: string): Stamp {
  const l = statSync(log.path);
  const b = statSync(basePath);
  return {
    version,
    log: { size: l.size, mtimeMs: l.mtimeMs },
    base: { path: basePath, size: b.size, mtimeMs: b.mtimeMs },
  };
}

/** Where the digest of the log at `logPath` (or of the open `log`) is kept. */
export function digestFile(log: WriteLog | string): string {
  return `${typeof log === 'string' ? log : log.path}.digest`;
}

/** The log's digest from its file when that file is this log's and this base's, else computed and the file written. */
export async function digestOf(log: WriteLog, basePath: string): Promise<LogDigest> {
  const stamp = stampOf(log, basePath);
  const kept = readDigest(log, stamp);
  if (kept) return kept;
  const digest = await digestLog(log, basePath);
  // A cache: a folder that cannot take the file (full, or something else in its place) costs the next check a digest, not the run.
  await writeFileAtomic(digestFile(log), encode(digest, stamp)).catch(() => undefined);
  return digest;
}

/** Remove the log's digest file (with the log: what it describes is gone). */
export function dropDigestFile(logPath: string): void {
  rmSync(digestFile(logPath), { force: true });
}

/**
 * The file: a 4-byte length and a JSON stamp; then per write or discard, in
 * log order, its entry index, sector count and 4-byte content id and each
 * sector's 16-byte hash; then the base's sector count and (sector, hash)
 * pairs. Hashes big-endian, as digest.ts reads sha1's bytes.
 */
function encode(d: LogDigest, stamp: Stamp): Buffer {
  const head = Buffer.from(JSON.stringify(stamp));
  let n = 4 + head.length + 4;
  for (const w of d.writes.values()) n += 12 + HASH * w.sectorHashes.length;
  n += 4 + d.baseHashes.size * (8 + HASH);
  const b = Buffer.alloc(n);
  let at = b.writeUInt32LE(head.length, 0);
  at += head.copy(b, at);
  at = b.writeUInt32LE(d.writes.size, at);
  for (const [index, w] of d.writes) {
    at = b.writeUInt32LE(index, at);
    at = b.writeUInt32LE(w.sectorHashes.length, at);
    at += Buffer.from(w.contentId, 'hex').copy(b, at);
    for (const h of w.sectorHashes) at = writeHash(b, h, at);
  }
  at = b.writeUInt32LE(d.baseHashes.size, at);
  for (const [sector, h] of d.baseHashes) {
    at = b.writeBigUInt64LE(BigInt(sector), at);
    at = writeHash(b, h, at);
  }
  return b;
}

function writeHash(b: Buffer, h: bigint, at: number): number {
  return b.writeBigUInt64BE(h & 0xffffffffffffffffn, b.writeBigUInt64BE(h >> 64n, at));
}

function readHash(b: Buffer, at: number): bigint {
  return (b.readBigUInt64BE(at) << 64n) | b.readBigUInt64BE(at + 8);
}

/** The digest the file holds, or undefined when there is none for this log and base. */
function readDigest(log: WriteLog, stamp: Stamp): LogDigest | undefined {
  let b: Buffer;
  try {
    b = readFileSync(digestFile(log));
  } catch {
    return undefined;
  }
  try {
    const headLen = b.readUInt32LE(0);
    if (b.toString('utf8', 4, 4 + headLen) !== JSON.stringify(stamp)) return undefined;
    let at = 4 + headLen;
    const writes = new Map<number, WriteDigest>();
    const count = b.readUInt32LE(at);
    at += 4;
    if (count !== log.entries.filter((e) => entryKind(e) === 'write' || entryKind(e) === 'discard').length) return undefined;
    for (let i = 0; i < count; i++) {
      const entry = log.entries[b.readUInt32LE(at)];
      const sectors = b.readUInt32LE(at + 4);
      const kind = entry && entryKind(entry);
      if (!entry || (kind !== 'write' && kind !== 'discard') || entry.nrSectors !== sectors) return undefined;
      const contentId = b.toString('hex', at + 8, at + 12);
      at += 12;
      const sectorHashes: bigint[] = [];
      for (let s = 0; s < sectors; s++, at += HASH) sectorHashes.push(readHash(b, at));
      writes.set(entry.index, { entry, contentId, sectorHashes });
    }
    const base = new Map<number, bigint>();
    const baseCount = b.readUInt32LE(at);
    at += 4;
    for (let i = 0; i < baseCount; i++, at += 8 + HASH) base.set(Number(b.readBigUInt64LE(at)), readHash(b, at + 8));
    if (at !== b.length) return undefined;
    return logDigest(log, writes, base);
  } catch (e) {
    // A file cut short reads past its end: not this log's digest.
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}
