import t from 'tap';
import { generatedBytes, generatedBytesReference, writerSector } from '../../harness/guest/content.ts';

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
