import { mkdir, writeFile, copyFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { run, runOk } from '../../harness/util/exec.ts';
import { tool } from '../../harness/util/tools.ts';
import type { TempDir } from '../../harness/util/tempdir.ts';

/**
 * Small ext4 images made right in the tests, the way the guide prepares
 * them: block-mapped files from `mkfs.ext4 -O ^extent,^64bit -d`, then the
 * extent feature switched on so `chattr +e` can migrate them.
 */
export interface TestImage {
  path: string;
  /** Host-side contents of each file, by path inside the filesystem. */
  files: Map<string, Buffer>;
}

export async function blockMappedImage(tmp: TempDir, name: string, files: Record<string, number>): Promise<TestImage> {
  const src = tmp.join(`${name}-src`);
  const contents = new Map<string, Buffer>();
  for (const [p, size] of Object.entries(files)) {
    const bytes = randomBytes(size);
    await mkdir(join(src, p, '..'), { recursive: true });
    await writeFile(join(src, p), bytes);
    contents.set(p, bytes);
  }
  await mkdir(src, { recursive: true });
  const path = tmp.join(`${name}.img`);
  await runOk(await tool('mkfs.ext4'), ['-q', '-F', '-b', '4096', '-O', '^extent,^64bit', '-d', src, path, '32M']);
  await runOk(await tool('tune2fs'), ['-O', 'extent', path]);
  return { path, files: contents };
}

export async function debugfs(image: string, request: string): Promise<string> {
  return (await runOk(await tool('debugfs'), ['-R', request, image])).stdout;
}

/** How debugfs says a file is mapped: EXTENTS: after migration, BLOCKS: before. */
export async function mappingOf(image: string, path: string): Promise<'extents' | 'blocks' | 'none'> {
  const stat = await debugfs(image, `stat ${path}`);
  if (/^EXTENTS:/m.test(stat)) return 'extents';
  if (/^BLOCKS:/m.test(stat)) return 'blocks';
  return 'none';
}

export async function fileBytes(tmp: TempDir, image: string, path: string): Promise<Buffer> {
  const out = tmp.join(`dump-${Math.random().toString(36).slice(2)}`);
  await debugfs(image, `dump ${path} ${out}`);
  const { readFile } = await import('node:fs/promises');
  return readFile(out);
}

/** A copy of a crash image with its journal replayed by e2fsck, as a recovery would. */
export async function replayedCopy(
  tmp: TempDir,
  image: string,
  name: string,
): Promise<{ path: string; exitCode: number | undefined; output: string }> {
  const path = tmp.join(`${name}-replayed.img`);
  await copyFile(image, path);
  const r = await run(await tool('e2fsck'), ['-E', 'journal_only', '-y', path]);
  return { path, exitCode: r.exitCode, output: r.stdout + r.stderr };
}

export async function needsRecovery(image: string): Promise<boolean> {
  const r = await runOk(await tool('dumpe2fs'), ['-h', image]);
  return /^Filesystem features:.*needs_recovery/m.test(r.stdout);
}
