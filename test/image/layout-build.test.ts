import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { statPaths } from '../../harness/image/debugfs.ts';
import { parseBlockMap, type BlockMap, type DataRun } from '../../harness/image/block-map.ts';
import { run } from '../../harness/util/exec.ts';
import { ConfigError } from '../../harness/util/errors.ts';
import { projectRoot } from '../../harness/util/paths.ts';
import { qcrashBin } from '../helpers/env.ts';

// Real mkfs, the libext2fs helper and debugfs: every layout kind is built
// and its block map read back from the image with debugfs (not taken from
// the plan), and the images are clean under e2fsck -fn.
const dir = join(projectRoot, 'test', 'fixtures', 'image', 'layouts');
const kinds = await buildImage(await loadRecipe(join(dir, 'kinds-1k.yaml')));
const stats = await statPaths(
  kinds.path,
  kinds.manifest.entries.map((e) => e.path),
);
const map = (p: string): BlockMap => parseBlockMap(stats.get(p)!.map);
const runsOf = (p: string): DataRun[] => map(p).data;

t.test('the image is clean and the manifest records what debugfs reads back', async (t) => {
  const fsck = await run('e2fsck', ['-fn', kinds.path]);
  t.equal(fsck.exitCode, 0, fsck.stdout);
  for (const e of kinds.manifest.entries)
    if (e.type === 'file' && e.size) t.same(e.blockMap?.data, map(e.path).data, `${e.path}: manifest block map`);
});

t.test('start: the first data block is where the recipe says; inline indirect blocks sit in the stream', async (t) => {
  const m = map('/k/start');
  t.same(m.data, [
    [0, 20000, 12],
    [12, 20013, 256],
    [268, 20271, 32],
  ]);
  t.same(
    m.index,
    [
      ['IND', 20012],
      ['DIND', 20269],
      ['IND', 20270],
    ],
    'as libext2fs and the kernel place them',
  );
});

t.test('next + separate: 9000 contiguous blocks, longer than a block group, then the indirect blocks', async (t) => {
  const m = map('/k/next-separate');
  t.equal(m.data.length, 1);
  t.equal(m.data[0]![2], 9000);
  const end = m.data[0]![1] + 9000;
  t.same(
    m.index.map(([, b]) => b),
    Array.from({ length: m.index.length }, (_, i) => end + i),
    'indirect blocks right after the data',
  );
  t.equal(m.index.length, 1 + 1 + Math.ceil((9000 - 12 - 256) / 256), 'IND, DIND and its INDs');
});

t.test('contiguous sparse runs touch across the hole; contiguous: false leaves one block', async (t) => {
  const packed = runsOf('/k/sparse-packed');
  t.equal(packed.length, 2);
  t.equal(packed[1]![1], packed[0]![1] + 100, 'the second run starts right after the first on disk');
  t.same(map('/k/sparse-packed').index[0], ['IND', 40000], 'indirect: { at: 40000 }');
  const gapped = runsOf('/k/sparse-gapped');
  t.equal(gapped[1]![1], gapped[0]![1] + 101, 'one free block between the runs');
});

t.test('split: runs of 3 blocks 2 apart; explicit runs with a gap and an anchored run', async (t) => {
  const s = runsOf('/k/split');
  t.equal(s.length, 10);
  for (let i = 1; i < s.length; i++)
    t.ok(s[i]![1] - (s[i - 1]![1] + s[i - 1]![2]) >= 2, `run ${i} is at least 2 blocks after the previous`);
  const r = runsOf('/k/runs');
  t.same(
    r.map((x) => x[2]),
    [100, 200, 200],
  );
  t.equal(r[1]![1], r[0]![1] + 100 + 7, 'gap: 7');
  t.equal(r[2]![1], 45000, 'at: 45000');
});

t.test('interleave: the two files alternate in runs of 4 blocks', async (t) => {
  const a = runsOf('/k/a');
  const b = runsOf('/k/b');
  t.same(
    a.map((r) => r[2]),
    [4, 4, 4, 4, 4, 4, 4, 4, 8],
    'a: 4-block runs until b runs out, then the rest of a in one run',
  );
  t.same(
    b.map((r) => r[2]),
    [4, 4, 4, 4, 4, 4, 4, 3],
    'b: 31 blocks (a partial last one) in runs of 4',
  );
  const bInd = map('/k/b').index[0]![1];
  for (let i = 0; i < b.length; i++) {
    const aEnd = a[i]![1] + a[i]![2];
    // b keeps its indirect block inline: it sits just before b's block 12, between a's run and b's.
    t.equal(b[i]![1], aEnd + (bInd === aEnd ? 1 : 0), `b run ${i} follows a run ${i}`);
  }
  t.equal(bInd, b[3]![1] - 1, "b's IND just before its block 12");
  t.equal(kinds.manifest.entries.find((e) => e.path === '/k/b')!.size, 30 * 1024 + 10);
});

t.test('the shipped tree recipe: each file has the extents its name says', async (t) => {
  const tree = await buildImage(await loadRecipe('limits-tree-1k'));
  for (const e of tree.manifest.entries) {
    const n = Number(/\/e(\d+)$/.exec(e.path)?.[1]);
    t.equal(e.blockMap?.data.length, n, `${e.path}: ${n} physically separate runs`);
  }
});

t.test('a layout that cannot be made: ConfigError at the recipe line', async (t) => {
  const err = await buildImage(await loadRecipe(join(dir, 'ext3-long-run.yaml'))).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, ConfigError);
  t.match(
    (err as Error).message,
    /ext3-long-run\.yaml:9: \/f\/long: no free stretch of 9000 blocks .*impossible without flex_bg/,
  );
  const sb = await buildImage(await loadRecipe(join(dir, 'on-superblock.yaml'))).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(
    (sb as Error).message,
    /on-superblock\.yaml:8: \/f\/x: cannot be placed at block 8193: block 8193 is group 1's backup superblock/,
  );
});

t.test('qcrash run on a scenario whose recipe cannot be made: exit 2, recipe file:line', async (t) => {
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [qcrashBin, 'run', join(dir, 'bad-layout-run.yaml'), '--format', 'none'], (e, _out, stderr) =>
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stderr }),
    );
  });
  t.equal(r.code, 2, r.stderr);
  t.match(r.stderr, /ext3-long-run\.yaml:9: \/f\/long: .*impossible without flex_bg/);
});
