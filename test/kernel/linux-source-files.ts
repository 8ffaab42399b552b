import { access, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { cacheDir } from '../../harness/util/paths.ts';
import { hashJson } from '../../harness/util/hash.ts';

/** Debian's kernel source packages, one per line qcrash knows. */
export const linuxSources = {
  '6.1': '/usr/src/linux-source-6.1.tar.xz',
  '6.12': '/usr/src/linux-source-6.12.tar.xz',
} as const;

/** What the fixes' tests read from a source package: checkpatch with its data files, and the file the fixes change. */
export const fixFiles = [
  'scripts/checkpatch.pl',
  'scripts/spelling.txt',
  'scripts/const_structs.checkpatch',
  'fs/ext4/migrate.c',
];

/**
 * A few files of a linux-source tarball, extracted once into the cache (a
 * folder named by the tarball's path, size and mtime, so a new package
 * version extracts again): reading members of a 140 MB .tar.xz costs a
 * full decompression, ~45 s here, which every test run would otherwise pay.
 * Returns the folder that holds the files at their tree paths.
 */
export async function linuxSourceFiles(tarball: string, files: readonly string[] = fixFiles): Promise<string> {
  const st = await stat(tarball);
  const dir = cacheDir('linux-source-files', hashJson({ tarball, size: st.size, mtime: st.mtimeMs, files }).slice(0, 16));
  if (
    await access(join(dir, '.complete')).then(
      () => true,
      () => false,
    )
  )
    return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  // The tarball's top folder (linux-source-6.1/) is stripped: files land at their tree paths.
  await execa('tar', ['-xJf', tarball, '-C', tmp, '--strip-components=1', '--wildcards', ...files.map((f) => `*/${f}`)]);
  await execa('touch', [join(tmp, '.complete')]);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return dir;
}
