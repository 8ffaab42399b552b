import t from 'tap';
import { loadRecipe, parseRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { debugfsBatch } from '../../harness/image/debugfs.ts';
import { readGeometry } from '../../harness/image/geometry.ts';
import { fastCommitArea, readJournalLocation } from '../../harness/image/jbd2.ts';
import { runOk } from '../../harness/util/exec.ts';
import { tool } from '../../harness/util/tools.ts';

// The shipped quota and fast_commit recipes build, pass e2fsck -fn with quota
// checked, give their entries the owners they name, and (fast_commit) a
// journal whose fast-commit area the kernel accepts.
for (const name of ['quota-1k', 'fc-quota-4k', 'fc-1k']) {
  t.test(name, async (t) => {
    const recipe = await loadRecipe(name);
    const img = await buildImage(recipe);
    const fsck = await runOk(await tool('e2fsck'), ['-fn', img.path], { okExitCodes: [0, 4] });
    t.equal(fsck.exitCode, 0, 'e2fsck -fn clean, quota usage included');
    const [stats] = await debugfsBatch(img.path, ['stats']);
    if (recipe.quota.length) t.match(stats, /Project quota inode:\s+\d+/, 'project quota inode');
    const [f3] = await debugfsBatch(img.path, ['stat /neighbours/f3']);
    t.match(
      f3,
      recipe.style === 'modern' ? /User:\s+1004\s+Group:\s+2004\s+Project:\s+14/ : /User:\s+1003\s+Group:\s+2003/,
      'owners of a small-files entry',
    );
    if (recipe.fastCommit) {
      const journal = await readJournalLocation(img.path, await readGeometry(img.path));
      const [first, end] = fastCommitArea(journal!.jsb);
      t.ok(journal!.jsb.numFcBlocks > 0, `s_num_fc_blks ${journal!.jsb.numFcBlocks}`);
      t.ok(first >= 1024, "the log keeps jbd2's 1024-block minimum beside the fast-commit area");
      t.equal(end, journal!.jsb.maxLen);
    }
  });
}

t.test('prjquota and project owners need 256-byte inodes', async (t) => {
  const fs = (style: string, extra: string) =>
    `filesystem: { block_size: 1024, style: ${style}, size_mb: 16${extra} }\nentries:\n  - { kind: file, path: /a, blocks: 1, owner: { project: 3 } }\n`;
  t.throws(() => parseRecipe('/x/r.yaml', fs('ext3', '')), /project id needs 256-byte inodes/);
  t.throws(() => parseRecipe('/x/r.yaml', fs('ext3', ', quota: [prjquota]')), /prjquota needs 256-byte inodes/);
  t.equal(parseRecipe('/x/r.yaml', fs('modern', ', quota: [usrquota, prjquota]')).quota.length, 2);
});

// validate/quota-owner's image: quota-clean, its one file non-root in project 0
// (the root directory's, so the stock kernel's temporary inode gets it right)
// and fragmented enough that its extent tree needs leaf blocks.
t.test('quota-owner-1k', async (t) => {
  const img = await buildImage(await loadRecipe('quota-owner-1k'));
  const fsck = await runOk(await tool('e2fsck'), ['-fn', img.path], { okExitCodes: [0, 4] });
  t.equal(fsck.exitCode, 0, 'e2fsck -fn clean, quota usage included');
  const stat = (await debugfsBatch(img.path, ['stat /q/fragmented-uid']))[0] ?? '';
  t.match(stat, /User:\s+1006\s+Group:\s+2006\s+Project:\s+0\s/, 'owner, and project 0');
  const runs = [...stat.matchAll(/\((\d+)\):(\d+)/g)].map((m) => Number(m[2]) - Number(m[1]));
  t.ok(new Set(runs).size > 4, `${new Set(runs).size} discontiguous runs: more than the 4 extents an inode holds`);
});
