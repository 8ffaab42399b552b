/**
 * The bytes qcrash-io (vm-images/guest/qcrash-io.c) writes: splitmix64 from a
 * host-chosen seed, little-endian. The host computes them to know what a
 * completed write step left in a file.
 */
const MASK = (1n << 64n) - 1n;

export function generatedBytes(seed: number | bigint, size: number): Buffer {
  const out = Buffer.alloc(size);
  let s = BigInt(seed) & MASK;
  for (let i = 0; i < size; i += 8) {
    s = (s + 0x9e3779b97f4a7c15n) & MASK;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
    z = z ^ (z >> 31n);
    if (i + 8 <= size) out.writeBigUInt64LE(z, i);
    else for (let j = 0; i + j < size; j++) out[i + j] = Number((z >> BigInt(8 * j)) & 0xffn);
  }
  return out;
}
