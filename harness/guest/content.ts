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
  // Whole words straight into a 32-bit view (little-endian hosts; Buffer.alloc's memory is 8-byte aligned).
  const words = littleEndian && out.byteOffset % 4 === 0 ? new Uint32Array(out.buffer, out.byteOffset, size >>> 2) : undefined;
  for (let i = 0; i < size; i += 8) {
    // s += GAMMA (0x9e3779b9_7f4a7c15)
    const lo = sl + 0x7f4a7c15;
    sl = lo >>> 0;
    sh = (sh + 0x9e3779b9 + (lo > 0xffffffff ? 1 : 0)) >>> 0;
    let zl = (sl ^ ((sl >>> 30) | (sh << 2))) >>> 0;
    let zh = (sh ^ (sh >>> 30)) >>> 0;
    mul64(zh, zl, 0xbf58476d, 0x1ce4e5b9);
    zl = (mulLo ^ ((mulLo >>> 27) | (mulHi << 5))) >>> 0;
    zh = (mulHi ^ (mulHi >>> 27)) >>> 0;
    mul64(zh, zl, 0x94d049bb, 0x133111eb);
    zl = (mulLo ^ ((mulLo >>> 31) | (mulHi << 1))) >>> 0;
    zh = (mulHi ^ (mulHi >>> 31)) >>> 0;
    if (i + 8 <= size) {
      if (words) {
        words[i >>> 2] = zl;
        words[(i >>> 2) + 1] = zh;
      } else {
        out.writeUInt32LE(zl, i);
        out.writeUInt32LE(zh, i + 4);
      }
    } else for (let j = 0; i + j < size; j++) out[i + j] = (j < 4 ? zl >>> (8 * j) : zh >>> (8 * (j - 4))) & 0xff;
  }
  return out;
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** mul64's result, high and low 32-bit halves: module variables rather than an array per call (the generator's loop made millions). */
let mulHi = 0;
let mulLo = 0;

/**
 * (ah:al) * (bh:bl) mod 2^64 into mulHi:mulLo. The low word is Math.imul's;
 * the high word is al*bl's upper half from 16-bit halves (every partial sum
 * stays below 2^32, so >>> is exact) plus the two cross products' low words.
 */
function mul64(ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const u = a1 * b0 + ((a0 * b0) >>> 16);
  const w = a0 * b1 + (u & 0xffff);
  mulLo = Math.imul(al, bl) >>> 0;
  mulHi = (a1 * b1 + (u >>> 16) + (w >>> 16) + Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0;
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
 * Sectors already made, by seed, then round and index: a write-log run
 * checks the same rewriter files in hundreds of states, and making a sector
 * (62 rounds of the generator) cost more than e2fsck's whole check of the
 * state. Keyed by numbers (round * 2^32 + index) under the seed's map: a
 * string key per lookup was a measurable part of a state's history check.
 * Bounded at 64 MiB of sectors (the seed cached first goes out first).
 */
const sectorCache = new Map<number | bigint, Map<number, Buffer>>();
let sectorsCached = 0;
const sectorCacheMax = 1 << 17;

/** Sector `index` (file offset index*512) of round `round` of a rewriter seeded with `seed`. Shared: callers copy, never write into it. */
export function writerSector(seed: number | bigint, round: number, index: number): Buffer {
  let bySeed = sectorCache.get(seed);
  const key = round * 0x100000000 + index;
  const known = bySeed?.get(key);
  if (known) return known;
  const b = makeWriterSector(seed, round, index);
  if (sectorsCached >= sectorCacheMax) {
    const [oldest, sectors] = sectorCache.entries().next().value!;
    sectorCache.delete(oldest);
    sectorsCached -= sectors.size;
    if (oldest === seed) bySeed = undefined;
  }
  if (!bySeed) sectorCache.set(seed, (bySeed = new Map<number, Buffer>()));
  bySeed.set(key, b);
  sectorsCached++;
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
  if (b.length < HEADER || b[0] !== MAGIC[0] || b[1] !== MAGIC[1] || b[2] !== MAGIC[2] || b[3] !== MAGIC[3]) return undefined;
  return { round: b.readUInt32LE(4), index: Number(b.readBigUInt64LE(8)) };
}

/** The byte mmap-holes stores at the start of its k-th hole page (k from 0), for k < n. */
export function holeStoreValues(seed: number | bigint, n: number): Uint8Array {
  const raw = generatedBytes(seed, 8 * n);
  const out = new Uint8Array(n);
  for (let k = 0; k < n; k++) out[k] = raw[8 * k]! | 1;
  return out;
}
