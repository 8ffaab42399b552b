import t from 'tap';
import { generatedBytes, generatedBytesReference, writerSector } from '../../harness/guest/content.ts';
import { splitmixInto, splitmixWord } from '../../harness/guest/splitmix.ts';

// The fast splitmix64 (WebAssembly, guest/splitmix.ts) must give the guest's bytes: the BigInt form is the one held to qcrash-io.c (writer-content.test.ts).
t.test('the WebAssembly splitmix64 gives the same bytes as the 64-bit reference', async (t) => {
  const seeds: Array<number | bigint> = [
    0,
    1,
    7,
    1000,
    0xffffffff,
    2 ** 40 + 3,
    2n ** 64n - 1n,
    0x9e3779b97f4a7c15n,
    123456789012345n,
  ];
  for (let i = 0; i < 200; i++)
    seeds.push(BigInt(Math.floor(Math.random() * 2 ** 32)) * 0x100000000n + BigInt(Math.floor(Math.random() * 2 ** 32)));
  for (const seed of seeds) {
    for (const size of [1, 7, 8, 13, 64, 496]) {
      if (!generatedBytes(seed, size).equals(generatedBytesReference(seed, size))) t.fail(`seed ${seed} size ${size} differs`);
    }
  }
  t.pass(`${seeds.length} seeds agree`);
  // Past the module's first 64 KiB page (its memory grows), then small again from the grown memory.
  for (const [seed, size] of [
    [5n, 0],
    [9n, 65536 + 9],
    [2n ** 63n + 11n, 300_001],
    [3n, 13],
  ] as const)
    t.ok(generatedBytes(seed, size).equals(generatedBytesReference(seed, size)), `seed ${seed}, ${size} bytes`);
});

t.test('a writer sector made twice is the same bytes (the second from the cache)', async (t) => {
  const a = Buffer.from(writerSector(42, 3, 9));
  t.same(writerSector(42, 3, 9), a);
  t.equal(a.subarray(0, 4).toString(), 'QCRW');
  t.notOk(writerSector(42, 4, 9).equals(a), 'another round is other bytes');
});

t.test('the generator written in place, and its first word, are the reference bytes', async (t) => {
  for (const seed of [0n, 1n, 2n ** 64n - 1n, 0x9e3779b97f4a7c15n, 123456789012345n]) {
    t.equal(splitmixWord(seed), generatedBytesReference(seed, 8).readBigUInt64LE(0), `first word of ${seed}`);
    const into = Buffer.alloc(520, 0xaa);
    splitmixInto(seed, into, 16, 496);
    t.ok(into.subarray(16, 512).equals(generatedBytesReference(seed, 496)), `496 bytes of ${seed} at offset 16`);
    t.ok(
      into.subarray(0, 16).every((b) => b === 0xaa) && into.subarray(512).every((b) => b === 0xaa),
      'nothing around them written',
    );
  }
});

t.test(
  "a writer sector is qcrash-io's: its header, then the generator from the sector's seed (all from the reference)",
  async (t) => {
    // qcrash-io.c: sector_seed(seed, round, index) = mix(seed ^ mix((round << 40) ^ index)); mix(x) is the generator's first word from x.
    const mask = 2n ** 64n - 1n;
    const mix = (x: bigint) => generatedBytesReference(x & mask, 8).readBigUInt64LE(0);
    for (const [seed, round, index] of [
      [42, 3, 9],
      [7, 0, 0],
      [2 ** 40 + 5, 17, 65535],
    ] as const) {
      const want = Buffer.alloc(512);
      want.write('QCRW', 0);
      want.writeUInt32LE(round, 4);
      want.writeBigUInt64LE(BigInt(index), 8);
      generatedBytesReference(mix(BigInt(seed) ^ mix((BigInt(round) << 40n) ^ BigInt(index))), 496).copy(want, 16);
      t.ok(writerSector(seed, round, index).equals(want), `seed ${seed}, round ${round}, sector ${index}`);
    }
  },
);
