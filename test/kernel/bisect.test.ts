import t from 'tap';
import { mkdtemp, readFile, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { git, tarballSource } from '../../harness/kernel/source.ts';
import { cacheDir, projectRoot, scenariosDir } from '../../harness/util/paths.ts';
import { hashJson } from '../../harness/util/hash.ts';

// Issue 6's acceptance: a small history on the 6.1 source (a harmless
// commit, a planted bug from ../shared/mutants, a commit that does not build,
// its fix and two more harmless commits) bisected by `qcrash bisect`, which
// must name the planted commit and skip the broken one. With six candidate
// commits the one that does not build is git bisect's first pick (it halves
// the range), so the skip is always exercised. The history is made with git plumbing on a
// clone without a work tree, so only the bisect clone checks out the 75k files.
const mutant = new URL('../../../shared/mutants/03-no-mark-dirty-after-swap.patch', import.meta.url).pathname;
const dir = await mkdtemp(join(tmpdir(), 'bisect-test-'));
const repo = join(dir, 'linux');
const bisectClone = cacheDir('bisect', hashJson({ tree: repo }).slice(0, 12));
t.teardown(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(bisectClone, { recursive: true, force: true });
});

const env = { GIT_INDEX_FILE: join(dir, 'index') };
const g = async (args: string[], input?: string) =>
  (
    await execa('git', args, {
      cwd: repo,
      env: {
        ...env,
        GIT_AUTHOR_NAME: 'Dev',
        GIT_AUTHOR_EMAIL: 'dev@example.org',
        GIT_COMMITTER_NAME: 'Dev',
        GIT_COMMITTER_EMAIL: 'dev@example.org',
      },
      ...(input === undefined ? {} : { input }),
    })
  ).stdout.trim();

/** Commit the index as it is now on top of HEAD. */
async function commit(subject: string): Promise<string> {
  const tree = await g(['write-tree']);
  const sha = await g(['commit-tree', tree, '-p', 'HEAD', '-m', subject]);
  await g(['update-ref', 'HEAD', sha]);
  return sha;
}

async function commitFile(path: string, content: string, subject: string): Promise<string> {
  const blob = await g(['hash-object', '-w', '--stdin'], content);
  await g(['update-index', '--cacheinfo', `100644,${blob},${path}`]);
  return commit(subject);
}

t.test('qcrash bisect names the planted commit and skips the one that does not build', { timeout: 2400_000 }, async (t) => {
  // Setup inside the test: tap ends the root test (and runs its teardown) once it has nothing pending.
  const src = await tarballSource();
  await git(dir, ['clone', '-q', '--shared', '--no-checkout', src.work, repo]);
  // The cached work tree's HEAD is wherever the last build left it (a build
  // with a mail-format patch commits it with git am): start from the pristine base.
  await g(['update-ref', 'HEAD', src.base]);
  await g(['read-tree', 'HEAD']);
  const base = await g(['rev-parse', 'HEAD']);
  t.equal(base, src.base, 'the history starts at the pristine source');
  const migrate = 'fs/ext4/migrate.c';
  const original = (await g(['show', `HEAD:${migrate}`])) + '\n';
  const harmless = original.replace(
    '// SPDX-License-Identifier: LGPL-2.1\n',
    '// SPDX-License-Identifier: LGPL-2.1\n/* a comment that changes nothing */\n',
  );
  const c1 = await commitFile(migrate, harmless, 'ext4: comment the migration code');
  await g(['apply', '--cached', mutant]);
  const planted = await commit('ext4: migrate: skip marking the inode dirty after the swap');
  const mutated = (await g(['show', `HEAD:${migrate}`])) + '\n';
  const broken = await commitFile(
    migrate,
    mutated.replace('#include "ext4_extents.h"\n', '#include "ext4_extents.h"\n#error "this commit does not build"\n'),
    'ext4: a commit that does not build',
  );
  const fixed = await commitFile(migrate, mutated, 'ext4: fix the build');
  const later = await commitFile(
    migrate,
    mutated.replace('#include <linux/slab.h>\n', '#include <linux/slab.h>\n/* a later comment */\n'),
    'ext4: a later comment',
  );
  const head = await commitFile(
    migrate,
    mutated.replace('#include <linux/slab.h>\n', '#include <linux/slab.h>\n/* the latest comment */\n'),
    'ext4: the latest comment',
  );
  t.not(harmless, original, 'the harmless commit changes the file');
  t.ok(
    (await readFile(mutant, 'utf8')).includes('ext4_mark_inode_dirty'),
    'the mutant patch is the one that drops a mark_inode_dirty',
  );
  const out = join(dir, 'out');
  const r = await execa(
    process.execPath,
    [
      join(projectRoot, 'bin/qcrash.js'),
      'bisect',
      '--tree',
      repo,
      '--good',
      base,
      '--bad',
      head,
      '--finding',
      'not-durable',
      '--out',
      out,
      join(scenariosDir, 'validate', 'durability.yaml'),
    ],
    { reject: false, all: true },
  );
  t.equal(r.exitCode, 0, `bisect succeeded:\n${r.all?.slice(-3000)}`);
  t.match(
    r.stdout,
    new RegExp(`^first bad commit: ${planted} ext4: migrate: skip marking the inode dirty after the swap$`, 'm'),
    'names the planted commit and its subject',
  );
  t.match(
    r.stdout,
    /^finding: validate\/durability \| .* \| not-durable/m,
    'and the finding that marked it (the scenario named by its path below scenarios/)',
  );
  t.match(
    r.stdout,
    new RegExp(`^  ${broken.slice(0, 12)} skip .*\\(does not build: .*this commit does not build`, 'm'),
    "the commit that does not build was skipped, with the compiler's error",
  );
  t.match(r.stdout, new RegExp(`^  ${head.slice(0, 12)} bad `, 'm'), 'the bad end was verified');
  t.notMatch(
    r.stdout,
    new RegExp(`^  (${fixed.slice(0, 12)}|${later.slice(0, 12)}) good `, 'm'),
    'no commit carrying the bug is judged good',
  );
  t.match(r.stdout, new RegExp(`^  ${base.slice(0, 12)} good `, 'm'), 'the good end was verified');
  t.notMatch(r.stdout, new RegExp(`^  ${c1.slice(0, 12)} bad `, 'm'), 'the harmless commit is never judged bad');
  await t.rejects(access(join(bisectClone, '.git', 'BISECT_LOG')), 'the bisect state is reset afterwards');
  t.equal(await g(['rev-parse', 'HEAD']), head, "the user's tree is untouched");
});
