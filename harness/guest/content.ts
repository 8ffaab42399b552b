/**
 * The bytes qcrash-io (vm-images/guest/qcrash-io.c) writes: splitmix64 from a
 * host-chosen seed, little-endian. The host computes them to know what a
 * completed write step left in a file, what any round of a rewriter (odirect,
 * mmap) put in a sector, and what mmap-holes stored in each hole page. Every
 * function here has its twin in qcrash-io.c; test/checks/writer-content.test.ts
 * holds them to bytes the guest wrote.
 */
const MASK = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;

/**
 * splitmix64 in 32-bit halves: the same bytes as the 64-bit BigInt form
 * (test/checks/generated-bytes.test.ts holds the two together), about 20
 * times faster; the content oracle makes every rewriter sector it checks.
 */
export function generatedBytes(seed: number | bigint, size: number): Buffer {
  const out = Buffer.alloc(size);
  const s0 = BigInt(seed) & MASK;
  let sh = Number(s0 >> 32n);
  let sl = Number(s0 & 0xffffffffn);
  for (let i = 0; i < size; i += 8) {
    // s += GAMMA (0x9e3779b9_7f4a7c15)
    const lo = sl + 0x7f4a7c15;
    sl = lo >>> 0;
    sh = (sh + 0x9e3779b9 + (lo > 0xffffffff ? 1 : 0)) >>> 0;
    let zl = (sl ^ ((sl >>> 30) | (sh << 2))) >>> 0;
    let zh = (sh ^ (sh >>> 30)) >>> 0;
    [zh, zl] = mul64(zh, zl, 0xbf58476d, 0x1ce4e5b9);
    zl = (zl ^ ((zl >>> 27) | (zh << 5))) >>> 0;
    zh = (zh ^ (zh >>> 27)) >>> 0;
    [zh, zl] = mul64(zh, zl, 0x94d049bb, 0x133111eb);
    zl = (zl ^ ((zl >>> 31) | (zh << 1))) >>> 0;
    zh = (zh ^ (zh >>> 31)) >>> 0;
    if (i + 8 <= size) {
      out.writeUInt32LE(zl, i);
      out.writeUInt32LE(zh, i + 4);
    } else for (let j = 0; i + j < size; j++) out[i + j] = (j < 4 ? zl >>> (8 * j) : zh >>> (8 * (j - 4))) & 0xff;
  }
  return out;
}

/** (ah:al) * (bh:bl) mod 2^64, as [high, low] 32-bit halves; every partial product stays exact in a double. */
function mul64(ah: number, al: number, bh: number, bl: number): [number, number] {
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  const lo = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
  const hi =
    a1 * b1 +
    Math.floor(p01 / 0x10000) +
    Math.floor(p10 / 0x10000) +
    Math.floor(mid / 0x10000) +
    Math.imul(ah, bl) +
    Math.imul(al, bh);
  return [hi >>> 0, lo];
}

/** The 64-bit BigInt form of generatedBytes: the reference the fast form is tested against. */
export function generatedBytesReference(seed: number | bigint, size: number): Buffer {
  const out = Buffer.alloc(size);
  let s = BigInt(seed) & MASK;
  for (let i = 0; i < size; i += 8) {
    s = (s + GAMMA) & MASK;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
    z = z ^ (z >> 31n);
    if (i + 8 <= size) out.writeBigUInt64LE(z, i);
    else for (let j = 0; i + j < size; j++) out[i + j] = Number((z >> BigInt(8 * j)) & 0xffn);
  }
  return out;
}

/** One generator output from state x (qcrash-io's mix()). */
function mix(x: bigint): bigint {
  return generatedBytes(x, 8).readBigUInt64LE(0);
}

export const SECTOR = 512;
const HEADER = 16;
const MAGIC = Buffer.from('QCRW');

function sectorSeed(seed: number | bigint, round: number, index: number): bigint {
  return mix((BigInt(seed) & MASK) ^ mix(((BigInt(round) << 40n) ^ BigInt(index)) & MASK));
}

/**
 * Sectors already made, by seed, round and index: a write-log run checks
 * the same rewriter files in hundreds of states, and making a sector
 * (62 rounds of 64-bit BigInt arithmetic) cost more than e2fsck's whole
 * check of the state. Bounded (oldest out first) at 64 MiB of sectors.
 */
const sectorCache = new Map<string, Buffer>();
const sectorCacheMax = 1 << 17;

/** Sector `index` (file offset index*512) of round `round` of a rewriter seeded with `seed`. Shared: callers copy, never write into it. */
export function writerSector(seed: number | bigint, round: number, index: number): Buffer {
  const key = `${seed}/${round}/${index}`;
  const known = sectorCache.get(key);
  if (known) return known;
  const b = makeWriterSector(seed, round, index);
  if (sectorCache.size >= sectorCacheMax) sectorCache.delete(sectorCache.keys().next().value!);
  sectorCache.set(key, b);
  return b;
}

function makeWriterSector(seed: number | bigint, round: number, index: number): Buffer {
  const b = Buffer.alloc(SECTOR);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(round, 4);
  b.writeBigUInt64LE(BigInt(index), 8);
  generatedBytes(sectorSeed(seed, round, index), SECTOR - HEADER).copy(b, HEADER);
  return b;
}

/** A whole round of a rewriter's file of `size` bytes (a multiple of 512). */
export function writerRound(seed: number | bigint, round: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i * SECTOR < size; i++) writerSector(seed, round, i).copy(out, i * SECTOR);
  return out;
}

/** The header of a rewriter's sector, when the bytes start with one (the body is not checked here). */
export function sectorHeader(b: Buffer): { round: number; index: number } | undefined {
  if (b.length < HEADER || !b.subarray(0, 4).equals(MAGIC)) return undefined;
  return { round: b.readUInt32LE(4), index: Number(b.readBigUInt64LE(8)) };
}

/** The byte mmap-holes stores at the start of its k-th hole page (k from 0), for k < n. */
export function holeStoreValues(seed: number | bigint, n: number): Uint8Array {
  const raw = generatedBytes(seed, 8 * n);
  const out = new Uint8Array(n);
  for (let k = 0; k < n; k++) out[k] = raw[8 * k]! | 1;
  return out;
}
