/**
 * The bytes qcrash-io (vm-images/guest/qcrash-io.c) writes: splitmix64 from a
 * host-chosen seed, little-endian. The host computes them to know what a
 * completed write step left in a file, what any round of a rewriter (odirect,
 * mmap) put in a sector, and what mmap-holes stored in each hole page. Every
 * function here has its twin in qcrash-io.c; test/checks/writer-content.test.ts
 * holds them to bytes the guest wrote.
 */
import { splitmixBytes, splitmixInto, splitmixWord } from './splitmix.ts';

const MASK = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;

/**
 * splitmix64 from `seed`, `size` bytes: made by WebAssembly (splitmix.ts),
 * the same bytes as the 64-bit BigInt form below
 * (test/checks/generated-bytes.test.ts holds the two together); the content
 * oracle makes every rewriter sector it checks.
 */
export function generatedBytes(seed: number | bigint, size: number): Buffer {
  return splitmixBytes(BigInt(seed) & MASK, size);
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
  return splitmixWord(x & MASK);
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
  // Every byte is written below (header, then the body straight from the generator).
  const b = Buffer.allocUnsafe(SECTOR);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(round, 4);
  b.writeBigUInt64LE(BigInt(index), 8);
  splitmixInto(sectorSeed(seed, round, index) & MASK, b, HEADER, SECTOR - HEADER);
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
