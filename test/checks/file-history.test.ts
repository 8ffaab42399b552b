import t from 'tap';
import { checkFileHistory, HistoryModelError, type FileOrigin } from '../../harness/checks/file-history.ts';
import type { FileExpectation, FileOp } from '../../harness/crash/expectations.ts';
import { ExitCode, InfraError } from '../../harness/util/errors.ts';
import { generatedBytes, holeStoreValues, writerRound, writerSector } from '../../harness/guest/content.ts';

// The per-sector content check on bytes built here with the host twin of
// qcrash-io's generator (which test/vm/agent.test.ts holds to bytes the real
// guest wrote): what durable ops left must read back exactly; before that,
// each sector is old or new, never anything else.
const B = 4096;
const SEED = 99;
const none: FileOrigin = { bytes: Buffer.alloc(0), data: [] };
const history = (ops: FileOp[], durable: number, origin: 'new' | 'recipe' = 'new'): FileExpectation => ({
  path: '/f',
  origin,
  ops,
  durable,
});
const odirect = (rounds?: number, size = 16 * 1024): FileOp => ({
  kind: 'writer',
  step: 'w-start',
  mode: 'odirect',
  size,
  seed: SEED,
  ...(rounds !== undefined ? { rounds } : {}),
});
const mmap = (rounds?: number, size = 16 * 1024): FileOp => ({
  kind: 'writer',
  step: 'm-start',
  mode: 'mmap',
  size,
  seed: SEED,
  ...(rounds !== undefined ? { rounds } : {}),
});
const check = (exp: FileExpectation, actual: Buffer | undefined, origin = none) =>
  checkFileHistory(exp, origin, actual, { blockSize: B });

t.test('a stopped and synced rewriter: every sector must hold its last round', async (t) => {
  const exp = history([odirect(5)], 1);
  const good = writerRound(SEED, 4, 16 * 1024);
  const v = check(exp, good);
  t.same([v.exact, v.badCount, v.sizes], [true, 0, { min: 16384, max: 16384 }]);

  const older = Buffer.from(good);
  writerSector(SEED, 3, 9).copy(older, 9 * 512);
  const stale = check(exp, older);
  t.equal(stale.badCount, 1, 'an older round in one sector is wrong once the last round was made durable');
  t.match(stale.bad[0], {
    sector: 9,
    offset: 4608,
    expected: 'round 4 of writer step "w-start"',
    found: "a writer's sector of round 3 for offset 4608",
  });

  const dropped = Buffer.from(good);
  dropped.fill(0, 8192, 12288);
  const lost = check(exp, dropped);
  t.equal(lost.badCount, 8, 'a dropped 4 KiB block is 8 wrong sectors');
  t.match(lost.bad[0], { offset: 8192, found: 'zeros' });
});

t.test('a rewriter still running at the crash: each sector of any round, at its own place, or the old bytes', async (t) => {
  const exp = history([odirect()], 0);
  const mixed = Buffer.concat([
    writerRound(SEED, 7, 8192),
    writerRound(SEED, 8, 16384).subarray(8192, 12288),
    Buffer.alloc(4096),
  ]);
  const v = check(exp, mixed);
  t.same([v.exact, v.badCount, v.mayBeMissing], [false, 0, true], 'rounds 7 and 8 and never-written zeros are all fine');
  t.equal(check(exp, undefined).badCount, 0, 'the file may not exist: its creation was not made durable');

  const moved = Buffer.from(mixed);
  writerSector(SEED, 7, 3).copy(moved, 5 * 512);
  t.match(
    check(exp, moved).bad,
    [{ sector: 5, found: "a writer's sector of round 7 for offset 1536" }],
    'a sector written for another offset is wrong',
  );

  const garbage = Buffer.from(mixed);
  garbage.write('not the generator', 20 * 512 + 100);
  t.match(
    check(exp, garbage).bad,
    [{ sector: 20, found: /with other bytes after its header/ }],
    'a header with a wrong body is wrong',
  );
});

t.test('a stopped rewriter not yet synced: rounds it reported, never a later one', async (t) => {
  const exp = history([odirect(3)], 0);
  t.equal(check(exp, writerRound(SEED, 2, 16384)).badCount, 0);
  t.equal(check(exp, writerRound(SEED, 3, 16384)).badCount, 32, 'round 3 was never written: every sector is wrong');
});

t.test('an mmap rewriter may tear a sector between two consecutive rounds at 8-byte words; O_DIRECT may not', async (t) => {
  const torn = Buffer.concat([writerRound(SEED, 4, 16384).subarray(0, 1000), writerRound(SEED, 3, 16384).subarray(1000)]);
  t.equal(torn.length, 16384);
  t.equal(check(history([mmap()], 0), torn).badCount, 0, 'mmap: round 4 up to byte 1000, round 3 after it');
  t.equal(check(history([odirect()], 0), torn).badCount, 1, 'O_DIRECT: the sector holding byte 1000 is wrong');
  const far = Buffer.concat([writerRound(SEED, 4, 16384).subarray(0, 1000), writerRound(SEED, 1, 16384).subarray(1000)]);
  t.equal(check(history([mmap()], 0), far).badCount, 1, 'rounds 4 and 1 are not consecutive');
  const first = Buffer.concat([writerRound(SEED, 0, 16384).subarray(0, 600), Buffer.alloc(16384 - 600)]);
  t.equal(check(history([mmap()], 0), first).badCount, 0, 'round 0 torn with the zeros before it');
});

t.test('writes: exact once durable, old or new per sector before; sizes in between', async (t) => {
  const w1: FileOp = { kind: 'write', step: 'w1', offset: 0, size: 3000, seed: 1, complete: true };
  const w2: FileOp = { kind: 'write', step: 'w2', offset: 1000, size: 5000, seed: 2, complete: true };
  const after = Buffer.alloc(6000);
  generatedBytes(1, 3000).copy(after, 0);
  generatedBytes(2, 5000).copy(after, 1000);
  const durable = check(history([w1, w2], 2), after);
  t.same([durable.exact, durable.badCount, durable.sizes], [true, 0, { min: 6000, max: 6000 }]);

  const half = check(history([w1, w2], 1), Buffer.concat([generatedBytes(1, 3000), Buffer.alloc(0)]));
  t.same(
    [half.exact, half.badCount, half.sizes],
    [false, 0, { min: 3000, max: 6000 }],
    'w2 lost entirely: fine before its fsync',
  );

  // w2 reached sector 4 (bytes 2048-2559) but not sector 2: sector by sector each is old or new.
  const partial = Buffer.from(after);
  generatedBytes(1, 3000).copy(partial, 1024, 1024, 1536);
  t.equal(check(history([w1, w2], 1), partial).badCount, 0);
  const wrong = Buffer.from(after);
  wrong[4000] = wrong[4000]! ^ 0xff;
  t.match(check(history([w1, w2], 1), wrong).bad, [
    { sector: 7, offset: 3584, expected: 'zeros (before any write) or the bytes of write step "w2"', found: /other bytes/ },
  ]);
});

t.test('a write into a recipe file: the recipe bytes with the write applied, the rest untouched', async (t) => {
  const recipe: FileOrigin = { bytes: generatedBytes(1234, 20000), data: [[0, 20000]] };
  const w: FileOp = { kind: 'write', step: 'w', offset: 5000, size: 100, seed: 5, complete: true };
  const want = Buffer.from(recipe.bytes);
  generatedBytes(5, 100).copy(want, 5000);
  t.equal(check(history([w], 1, 'recipe'), want, recipe).badCount, 0);
  const untouched = Buffer.from(want);
  untouched[12345] = untouched[12345]! ^ 1;
  t.match(check(history([w], 1, 'recipe'), untouched, recipe).bad, [
    { sector: 24, offset: 12288, expected: "the recipe's bytes", found: /other bytes/ },
  ]);
  t.match(
    check(history([w], 1, 'recipe'), recipe.bytes, recipe).bad,
    [{ sector: 9, expected: 'the bytes of write step "w"', found: "the recipe's original bytes" }],
    'the write lost after its fsync',
  );
});

t.test('mmap-holes over a recipe file with holes: stored pages hold their byte, the others their old bytes', async (t) => {
  // 16 pages; data in pages 0-3 and 10-15: hole pages 4-9.
  const size = 16 * 4096;
  const bytes = Buffer.alloc(size);
  generatedBytes(1, 4 * 4096).copy(bytes, 0);
  generatedBytes(2, 6 * 4096).copy(bytes, 10 * 4096);
  const recipe: FileOrigin = {
    bytes,
    data: [
      [0, 4 * 4096],
      [10 * 4096, size],
    ],
  };
  const op = (stored?: number): FileOp => ({
    kind: 'mmap-holes',
    step: 'h-start',
    seed: 7,
    ...(stored !== undefined ? { stored, holes: 6, first: 4 * 4096, last: 9 * 4096 } : {}),
  });
  const values = holeStoreValues(7, 6);
  const storedUpTo = (n: number) => {
    const b = Buffer.from(bytes);
    for (let k = 0; k < n; k++) b[(4 + k) * 4096] = values[k]!;
    return b;
  };
  t.equal(
    check(history([op(4)], 1, 'recipe'), storedUpTo(4), recipe).badCount,
    0,
    'stopped after 4 stores, unmounted: exactly those',
  );
  t.match(
    check(history([op(4)], 1, 'recipe'), storedUpTo(3), recipe).bad,
    [{ offset: 7 * 4096, expected: 'the store of mmap-holes step "h-start"', found: 'zeros' }],
    'a store the umount made durable and the migration lost',
  );
  t.equal(check(history([op(4)], 0, 'recipe'), storedUpTo(3), recipe).badCount, 0, 'not yet durable: fine');
  t.equal(check(history([op(4)], 0, 'recipe'), storedUpTo(5), recipe).badCount, 1, 'a fifth store was never made');
  t.equal(check(history([op()], 0, 'recipe'), storedUpTo(6), recipe).badCount, 0, 'still running: any of them');
  const wrongValue = storedUpTo(2);
  wrongValue[5 * 4096] = values[0]!;
  t.equal(
    check(history([op()], 0, 'recipe'), wrongValue, recipe).badCount,
    values[0] === values[1] ? 0 : 1,
    "the first store's byte in the second page is wrong",
  );
  let thrown: unknown;
  try {
    check(
      history(
        [{ kind: 'mmap-holes', step: 'h-start', seed: 7, stored: 1, holes: 5, first: 4 * 4096, last: 8 * 4096 }],
        1,
        'recipe',
      ),
      storedUpTo(1),
      recipe,
    );
  } catch (e) {
    thrown = e;
  }
  t.ok(
    thrown instanceof HistoryModelError,
    'the guest and the host disagree about the holes: a harness problem, never a finding',
  );
  t.ok(thrown instanceof InfraError && thrown.exitCode === ExitCode.infrastructure, 'an infrastructure error: exit 3');
  t.match(
    (thrown as Error).message,
    /found 5 hole pages \(first at 16384, last at 32768\) where the host's model of the file has 6 \(first at 16384, last at 36864\)/,
  );
});

t.test('a rewriter stopped before its first round only grew the file', async (t) => {
  const v = check(history([odirect(0)], 1), Buffer.alloc(16384));
  t.same([v.exact, v.badCount, v.sizes], [true, 0, { min: 16384, max: 16384 }]);
  t.match(
    check(history([odirect(0)], 1), writerRound(SEED, 0, 16384)).bad[0],
    { expected: 'zeros (before any write)', found: /round 0/ },
    'round 0 was never written',
  );
});

// A rewriter on a recipe file being migrated: 24 KiB of the recipe's bytes,
// data in blocks 0-1 and 4-5 and a hole in blocks 2-3; the writer's range
// [8192, 32768) covers a hole, data, and two blocks past the end (an append).
const recipeBytes = Buffer.concat([generatedBytes(7, 8192), Buffer.alloc(8192), generatedBytes(8, 8192)]);
const recipeOrigin: FileOrigin = {
  bytes: recipeBytes,
  data: [
    [0, 8192],
    [16384, 24576],
  ],
};
const onRecipe = (mode: 'odirect' | 'mmap' | 'buffered', rounds?: number): FileOp => ({
  kind: 'writer',
  step: `${mode}-start`,
  mode,
  offset: 8192,
  size: 24576,
  seed: SEED,
  ...(rounds !== undefined ? { rounds } : {}),
});
/** The file as round `r` left it: the recipe's bytes before the range, the round's sectors (absolute index) in it. */
const afterRound = (r: number) => {
  const b = Buffer.alloc(32768);
  recipeBytes.copy(b);
  for (let s = 16; s < 64; s++) writerSector(SEED, r, s).copy(b, s * 512);
  return b;
};

t.test(
  'a rewriter on a recipe file, stopped and synced: the recipe bytes outside its range, its last round inside, the file grown by the append',
  async (t) => {
    for (const mode of ['odirect', 'mmap', 'buffered'] as const) {
      const exp = history([onRecipe(mode, 4)], 1, 'recipe');
      const v = check(exp, afterRound(3), recipeOrigin);
      t.same([v.exact, v.badCount, v.sizes], [true, 0, { min: 32768, max: 32768 }], `${mode}: exact`);
    }
    const exp = history([onRecipe('odirect', 4)], 1, 'recipe');
    const stale = afterRound(3);
    recipeBytes.copy(stale, 16384, 16384, 16896);
    t.match(
      check(exp, stale, recipeOrigin).bad,
      [{ sector: 32, expected: 'round 3 of writer step "odirect-start"', found: "the recipe's original bytes" }],
      'once durable, the recipe bytes under the range are wrong',
    );
    const zeroedHead = afterRound(3);
    zeroedHead.fill(0, 0, 512);
    t.match(
      check(exp, zeroedHead, recipeOrigin).bad,
      [{ sector: 0, expected: "the recipe's bytes", found: 'zeros' }],
      "bytes outside the range are the recipe's, always",
    );
    const relative = afterRound(3);
    writerSector(SEED, 3, 0).copy(relative, 16 * 512);
    t.match(
      check(exp, relative, recipeOrigin).bad,
      [{ sector: 16, found: "a writer's sector of round 3 for offset 0" }],
      'a sector stamped for its place in the range, not in the file, is wrong',
    );
  },
);

t.test(
  'a rewriter on a recipe file still running: each sector of its range the bytes before it (recipe, hole zeros) or some round; the size anything up to the append',
  async (t) => {
    const exp = history([onRecipe('odirect')], 0, 'recipe');
    const mixed = afterRound(5);
    recipeBytes.copy(mixed, 16384, 16384, 20480); // data block 4 not yet rewritten
    mixed.fill(0, 8192, 12288); // hole block 2 not yet written
    writerSector(SEED, 2, 40).copy(mixed, 40 * 512);
    const v = check(exp, mixed, recipeOrigin);
    t.same([v.exact, v.badCount, v.sizes, v.mayBeMissing], [false, 0, { min: 24576, max: 32768 }, false]);
    t.equal(
      check(exp, recipeBytes, recipeOrigin).badCount,
      0,
      'the recipe file as it was, 24 KiB: fine before anything was durable',
    );
    const foreign = afterRound(5);
    generatedBytes(1234, 512).copy(foreign, 20 * 512);
    t.match(
      check(exp, foreign, recipeOrigin).bad,
      [{ sector: 20, expected: 'zeros (a hole of the recipe) or a round of writer step "odirect-start"' }],
      'anything else in the range is wrong',
    );
  },
);

t.test(
  'a buffered rewriter may tear a sector between consecutive rounds at any byte, an mmap one at words, O_DIRECT never',
  async (t) => {
    const torn = afterRound(4);
    const next = writerSector(SEED, 5, 50);
    for (let i = 16; i < 512; i += 2) torn[50 * 512 + i] = next[i]!; // every other byte from round 5
    t.equal(
      check(history([onRecipe('buffered')], 0, 'recipe'), torn, recipeOrigin).badCount,
      0,
      'buffered: the page-cache copy raced writeback',
    );
    t.equal(
      check(history([onRecipe('mmap')], 0, 'recipe'), torn, recipeOrigin).badCount,
      1,
      'mmap stores whole words: a byte-level mix is wrong',
    );
    t.equal(
      check(history([onRecipe('odirect')], 0, 'recipe'), torn, recipeOrigin).badCount,
      1,
      'O_DIRECT: a sector is one round',
    );
    const skipped = afterRound(4);
    const later = writerSector(SEED, 6, 50);
    for (let i = 16; i < 512; i += 2) skipped[50 * 512 + i] = later[i]!;
    t.equal(
      check(history([onRecipe('buffered')], 0, 'recipe'), skipped, recipeOrigin).badCount,
      1,
      'rounds 4 and 6 are not consecutive: wrong',
    );
  },
);

t.test('an append not made durable: the old size and bytes, or the new ones, never the new size with zeros', async (t) => {
  // Planted bug 14's signature: the swap published i_size as the on-disk size
  // while the appended (delayed) blocks were not allocated.
  const old = generatedBytes(7, 3 * B);
  const origin: FileOrigin = { bytes: old, data: [[0, 3 * B]] };
  const append: FileOp = { kind: 'write', step: 'append', offset: 3 * B, size: 2 * B, seed: 8, complete: true };
  const exp = history([append], 0, 'recipe');
  t.equal(check(exp, old, origin).badCount, 0, 'the old file');
  t.equal(check(exp, Buffer.concat([old, generatedBytes(8, 2 * B)]), origin).badCount, 0, 'the file with the append');
  const zeros = check(exp, Buffer.concat([old, Buffer.alloc(2 * B)]), origin);
  t.equal(zeros.badCount, 16, 'the new size with zeros: every sector of the append is wrong');
  t.match(zeros.bad[0], { offset: 3 * B, found: 'zeros' });
  // A rewriter grows the file with ftruncate before its first round: there, zeros past the old end are a state.
  const grown = check(
    history([{ kind: 'writer', step: 'w-start', mode: 'odirect', offset: 3 * B, size: 2 * B, seed: SEED }], 0, 'recipe'),
    Buffer.concat([old, Buffer.alloc(2 * B)]),
    origin,
  );
  t.equal(grown.badCount, 0, "a rewriter's ftruncate before its first round");
});

t.test('sectors compared a run at a time: every wrong sector is still found, wherever it falls in a run', async (t) => {
  // A 200 KiB rewriter file (400 sectors: six runs of 64 and a part), durable at its last round.
  const size = 200 * 1024;
  const exp = history([odirect(3, size)], 1);
  const good = writerRound(SEED, 2, size);
  t.equal(check(exp, good).badCount, 0);
  // First and last sector of a run, one in its middle, two next to each other, and the file's last.
  const wrong = [0, 63, 64, 100, 101, 127, 128, 399];
  const bad = Buffer.from(good);
  for (const s of wrong) writerSector(SEED, 1, s).copy(bad, s * 512);
  const v = check(exp, bad);
  t.equal(v.badCount, wrong.length);
  const all = checkFileHistory(exp, none, bad, { blockSize: B, limit: 100 });
  t.same(
    all.bad.map((b) => b.sector),
    wrong,
    'exactly the sectors written wrong',
  );
  // Bytes past the file's size in its last, cut short sector: judged as far as they go.
  const cut = good.subarray(0, size - 100);
  t.equal(check(exp, cut).badCount, 0, 'a last sector cut short is compared as far as it goes');
  const cutBad = Buffer.from(cut);
  cutBad.writeUInt8(cutBad.readUInt8(cutBad.length - 1) ^ 0xff, cutBad.length - 1);
  t.same(
    checkFileHistory(exp, none, cutBad, { blockSize: B, limit: 100 }).bad.map((b) => b.sector),
    [399],
    'a wrong byte in the last, cut short sector',
  );
  // Bytes past the version's size are no sector of it: a file longer than any version has them wrong.
  const longer = Buffer.concat([good, Buffer.alloc(4096)]);
  t.equal(check(exp, longer).badCount, 8, 'eight sectors past the end of every version');
});
