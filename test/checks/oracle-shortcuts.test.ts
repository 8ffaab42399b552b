import t from 'tap';
import { copyFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { runOracles, needsRepair } from '../../harness/checks/oracle.ts';
import { decodeExit } from '../../harness/image/e2fsck.ts';
import { noExpectations } from '../../harness/crash/expectations.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// The oracle's shortcut (no -fy and no second -fn when the first -fn left
// nothing to repair) on real images: it is taken where only the
// superblock's summary counts are off, and never where a finding needs the
// repair (corruption, and a repair that does not converge).
const base = await buildImage(await loadRecipe('small-4k'));
const tmp = await TempDir.create('oracle-shortcuts');
t.teardown(() => tmp.remove());

async function image(name: string, debugfsCommands: string[]): Promise<string> {
  const img = tmp.join(`${name}.img`);
  await copyFile(base.path, img);
  for (const c of debugfsCommands) execFileSync('debugfs', ['-w', '-R', c, img], { stdio: 'ignore' });
  return img;
}

const ctx = { manifest: base.manifest, migrated: [], expectations: noExpectations };

t.test('only the superblock free counts wrong: leak findings from one -fn, no repair', async (t) => {
  const img = await image('counts', ['ssv free_blocks_count 17', 'ssv free_inodes_count 5']);
  const r = await runOracles({ mode: 'e2fsck', image: img, runs: [] }, ctx);
  t.same(
    r.runs.map((x) => x.mode),
    ['check'],
    'one e2fsck -fn and nothing else',
  );
  t.same([...new Set(r.findings.map((f) => `${f.class}:${f.name}`))].sort(), [
    'leak:PR_5_FREE_BLOCK_COUNT',
    'leak:PR_5_FREE_INODE_COUNT',
  ]);
  t.equal(r.ms?.repairMs, 0);
});

t.test('a real problem beside the counts: the repair and the second -fn still run', async (t) => {
  const img = await image('links', ['ssv free_blocks_count 17', 'set_inode_field /shapes/direct-12 links_count 0']);
  const r = await runOracles({ mode: 'e2fsck', image: img, runs: [] }, ctx);
  t.same(
    r.runs.map((x) => x.mode),
    ['check', 'repair', 'check'],
  );
  t.ok(
    r.findings.some((f) => f.class === 'corruption'),
    'the corruption is reported',
  );
  t.ok(
    r.findings.some((f) => f.name === 'PR_5_FREE_BLOCK_COUNT'),
    'and the count beside it',
  );
});

t.test('needsRepair: counts alone with exit 0 are done; any other problem, or a non-zero exit, repairs', async (t) => {
  const p = (code: number) => ({ code, codeHex: `0x${code.toString(16).padStart(6, '0')}`, pass: code >> 16, attrs: {} });
  t.equal(needsRepair({ exit: decodeExit(0), problems: [] }), false);
  t.equal(needsRepair({ exit: decodeExit(0), problems: [p(0x050000), p(0x05000d), p(0x05000f)] }), false);
  t.equal(
    needsRepair({ exit: decodeExit(4), problems: [p(0x05000d)] }),
    true,
    'e2fsck itself says errors are left: repair (a non-convergence must be seen)',
  );
  t.equal(
    needsRepair({ exit: decodeExit(0), problems: [p(0x05000f), p(0x050005)] }),
    true,
    'a block in use marked free beside the counts',
  );
  t.equal(needsRepair({ exit: decodeExit(0), problems: [p(0x010004)] }), true);
});
