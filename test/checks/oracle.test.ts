import t from 'tap';
import { copyFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { checkImage } from '../../harness/run/check-image.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { statPaths } from '../../harness/image/debugfs.ts';
import { join, dirname } from 'node:path';

// Real images from the small recipe, damaged with debugfs -w the way a
// buggy migration would, then judged by the same oracle `qcrash check` runs.
const base = await buildImage(await loadRecipe('small-4k'));
const manifestFile = join(dirname(base.path), 'manifest.json');
const tmp = await TempDir.create('oracle-test');
t.teardown(() => tmp.remove());

async function damaged(name: string, debugfsCommands: string[]): Promise<string> {
  const img = tmp.join(`${name}.img`);
  await copyFile(base.path, img);
  for (const c of debugfsCommands) execFileSync('debugfs', ['-w', '-R', c, img], { stdio: 'ignore' });
  return img;
}

function codes(findings: Array<{ class: string; name: string }>, cls: string): string[] {
  return [...new Set(findings.filter((f) => f.class === cls).map((f) => f.name))].sort();
}

t.test('a clean image has no findings', async (t) => {
  const r = await checkImage(base.path, { manifestFile });
  t.same(r.findings, []);
});

t.test('a recipe file whose link count was cleared is corruption', async (t) => {
  const img = await damaged('links', ['set_inode_field /shapes/direct-12 links_count 0']);
  const r = await checkImage(img, { manifestFile });
  t.ok(codes(r.findings, 'corruption').includes('PR_1_ZERO_DTIME'), 'a manifest inode with zero links is not the temp inode');
  t.ok(codes(r.findings, 'corruption').includes('PR_2_UNUSED_INODE'), 'the directory entry now points to a deleted inode');
});

t.test('a block in use marked free is a "+" difference: corruption', async (t) => {
  const st = (await statPaths(base.path, ['/shapes/ind-13'])).get('/shapes/ind-13')!;
  const blk = Number(/\(0\):(\d+)/.exec(st.map)?.[1] ?? /\(0-\d+\):(\d+)/.exec(st.map)?.[1]);
  t.ok(blk > 0, `found block 0 of ind-13 (${blk})`);
  const img = await damaged('freeb', [`freeb ${blk}`]);
  const r = await checkImage(img, { manifestFile });
  t.same(codes(r.findings, 'corruption'), ['PR_5_BLOCK_USED']);
  const f = r.findings.find((x) => x.name === 'PR_5_BLOCK_USED')!;
  t.equal(f.code, '0x050005');
  t.equal(f.block, blk);
  t.ok(codes(r.findings, 'leak').includes('PR_5_FREE_BLOCK_COUNT'), 'the free count is a leak-class summary finding');
});

t.test('two files claiming one block are multiply-claimed: corruption', async (t) => {
  const st = (await statPaths(base.path, ['/shapes/direct-12'])).get('/shapes/direct-12')!;
  const blk = Number(/\(0(?:-\d+)?\):(\d+)/.exec(st.map)![1]);
  const img = await damaged('dup', [`set_inode_field /shapes/ind-13 block[0] ${blk}`]);
  const r = await checkImage(img, { manifestFile });
  const c = codes(r.findings, 'corruption');
  t.ok(c.includes('PR_1B_DUP_BLOCK') || c.includes('PR_1B_DUP_RANGE'), `multiply-claimed block reported: ${c.join(', ')}`);
  t.ok(c.includes('PR_1D_DUP_FILE'), 'pass 1D names the files sharing it');
  t.ok(
    r.findings.some((f) => f.class === 'data' && f.path === '/shapes/ind-13' && f.code === 'content-changed'),
    'the content oracle sees ind-13 changed',
  );
});

t.test("overwriting a file's data is a data finding with path and hashes", async (t) => {
  const st = (await statPaths(base.path, ['/shapes/direct-12'])).get('/shapes/direct-12')!;
  const blk = Number(/\(0(?:-\d+)?\):(\d+)/.exec(st.map)![1]);
  const img = tmp.join('overwrite.img');
  await copyFile(base.path, img);
  // Write 4 KiB of zeros over the file's first data block, as a lost write would.
  execFileSync('dd', ['if=/dev/zero', `of=${img}`, 'bs=4096', `seek=${blk}`, 'count=1', 'conv=notrunc'], { stdio: 'ignore' });
  const r = await checkImage(img, { manifestFile });
  const f = r.findings.find((x) => x.class === 'data');
  t.ok(f, 'a data finding');
  t.equal(f!.code, 'content-changed');
  t.equal(f!.path, '/shapes/direct-12');
  t.match(f!.detail ?? '', /expected sha256 [0-9a-f]{64}/);
  t.same(codes(r.findings, 'corruption'), [], 'e2fsck sees nothing: only the content oracle catches it');
});

t.test('a leaked temporary inode, as an interrupted migration leaves it, is only a leak', async (t) => {
  // Allocate an inode with links 0 and dtime 0 holding a freshly allocated block:
  // what ext4_ext_migrate's temp inode looks like on disk after a crash.
  const img = await damaged('leak', []);
  execFileSync('debugfs', ['-w', '-f', '-', img], {
    input:
      'write /dev/null /tmpleak\nset_inode_field /tmpleak block[0] 7000\nsetb 7000\nset_inode_field /tmpleak i_blocks 8\nset_inode_field /tmpleak size 4096\nset_inode_field /tmpleak links_count 0\nunlink /tmpleak\n',
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  const r = await checkImage(img, { manifestFile });
  t.same(codes(r.findings, 'corruption'), [], 'no corruption');
  t.same(codes(r.findings, 'data'), [], 'no data finding');
  t.ok(codes(r.findings, 'leak').includes('PR_1_ZERO_DTIME'), 'the temp inode is a leak');
  t.ok(
    codes(r.findings, 'leak').some((c) => c === 'PR_5_BLOCK_UNUSED' || c === 'PR_5_BLOCK_RANGE_UNUSED'),
    "its block becomes a '-' difference",
  );
});

t.test('i_blocks too high on a migrated inode is a leak, too low is corruption', async (t) => {
  const img = await damaged('iblocks', [
    'set_inode_field /shapes/direct-12 i_blocks 200',
    'set_inode_field /shapes/ind-13 i_blocks 8',
  ]);
  const r = await checkImage(img, { manifestFile });
  const high = r.findings.find((f) => f.name === 'PR_1_BAD_I_BLOCKS' && f.path === '/shapes/direct-12');
  const low = r.findings.find((f) => f.name === 'PR_1_BAD_I_BLOCKS' && f.path === '/shapes/ind-13');
  t.equal(high?.class, 'leak');
  t.equal(low?.class, 'corruption');
});
