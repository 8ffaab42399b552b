import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { tarballSource } from '../../harness/kernel/source.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

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
