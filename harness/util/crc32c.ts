/**
 * CRC32C (Castagnoli) as e2fsprogs computes it (ext2fs_crc32c_le): reflected,
 * not inverted after, seeded by the caller. ext4's metadata checksums and
 * e2fsck's undo files are made with it.
 */
const crcTable = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** ext2fs_crc32c_le(seed, buf, len); the default seed is ~0, as e2fsprogs starts a chain. */
export function crc32cLe(b: Uint8Array, seed = 0xffffffff): number {
  let c = seed >>> 0;
  for (let i = 0; i < b.length; i++) c = crcTable[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}
