import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { git, gitTreeSource, tarballSource } from '../../harness/kernel/source.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// How qcrash keeps its own git work trees of kernel sources, on small trees.
//
// Shards of one validate build their kernels on several machines; merge
// refuses shards whose kernel ids differ, and a built kernel's id includes
// the base commit of the unpacked tarball. That commit must depend on the
// tarball alone: here a small tarball unpacked into two caches, at two
// different times, gives the same commit.
t.test('the tarball base commit is the same in every cache', async (t) => {
  await using tmp = await TempDir.create('source-base');
  const src = join(tmp.path, 'src', 'linux-source-9.9');
  await mkdir(join(src, 'fs', 'ext4'), { recursive: true });
  await writeFile(join(src, 'fs', 'ext4', 'migrate.c'), '/* not a kernel */\n');
  await writeFile(join(src, 'Makefile'), 'all:\n');
  const tarball = join(tmp.path, 'linux-source-9.9.tar.xz');
  await execa('tar', ['-cJf', tarball, '-C', join(tmp.path, 'src'), 'linux-source-9.9']);
  const saved = process.env.QCRASH_CACHE;
  t.teardown(() => {
    if (saved === undefined) delete process.env.QCRASH_CACHE;
    else process.env.QCRASH_CACHE = saved;
  });
  const bases: string[] = [];
  for (const cache of ['cache-a', 'cache-b']) {
    process.env.QCRASH_CACHE = join(tmp.path, cache);
    bases.push((await tarballSource(tarball)).base);
    await new Promise((r) => setTimeout(r, 1100)); // another second on the clock
  }
  t.match(bases[0], /^[0-9a-f]{40}$/);
  t.equal(bases[1], bases[0], 'one commit for one tarball');
});

// qcrash's clone of a user's tree borrows its objects. A nightly follows a
// branch that is rebased and the user's tree is gc'd: our clone is then left
// with a checked-out commit and a remote ref that exist nowhere, and git
// refuses to fetch into it ("bad object"). The next build must still work.
t.test("a clone whose refs name objects the user's tree pruned fetches again", async (t) => {
  await using tmp = await TempDir.create('source-pruned');
  const saved = process.env.QCRASH_CACHE;
  process.env.QCRASH_CACHE = join(tmp.path, 'cache');
  t.teardown(() => {
    if (saved === undefined) delete process.env.QCRASH_CACHE;
    else process.env.QCRASH_CACHE = saved;
  });
  const user = join(tmp.path, 'linux');
  const env = {
    GIT_AUTHOR_NAME: 'Dev',
    GIT_AUTHOR_EMAIL: 'dev@example.org',
    GIT_COMMITTER_NAME: 'Dev',
    GIT_COMMITTER_EMAIL: 'dev@example.org',
  };
  const u = async (...args: string[]) => (await execa('git', args, { cwd: user, env })).stdout.trim();
  await execa('git', ['init', '-q', '-b', 'main', user]);
  await writeFile(join(user, 'migrate.c'), 'one\n');
  await u('add', 'migrate.c');
  await u('commit', '-q', '-m', 'one');
  await u('checkout', '-q', '-b', 'next');
  await writeFile(join(user, 'migrate.c'), 'two\n');
  await u('commit', '-q', '-am', 'two (rebased away later)');
  const gone = await u('rev-parse', 'HEAD');
  const first = await gitTreeSource(user, 'next');
  t.equal(first.base, gone);
  await git(first.work, ['checkout', '-q', '-f', '--detach', gone]); // as a build leaves it
  // The branch is rebased and the old commit pruned from the user's tree.
  await u('checkout', '-q', 'main');
  await u('branch', '-q', '-D', 'next');
  await u('reflog', 'expire', '--expire=now', '--all');
  await u('gc', '-q', '--prune=now');
  await u('checkout', '-q', '-b', 'next');
  await writeFile(join(user, 'migrate.c'), 'three\n');
  await u('commit', '-q', '-am', 'three');
  const head = await u('rev-parse', 'HEAD');
  const again = await gitTreeSource(user, 'next');
  t.equal(again.work, first.work, 'the same clone (and build directory)');
  t.equal(again.base, head, 'at the new head');
  t.notOk((await git(again.work, ['cat-file', '-e', `${head}^{commit}`], false)).failed, 'whose objects it can read');
});
