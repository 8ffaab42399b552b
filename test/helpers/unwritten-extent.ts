import { execFileSync } from 'node:child_process';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { copyImage } from '../../harness/image/disk.ts';
import type { ManifestEntry } from '../../harness/image/manifest.ts';

/**
 * small-4k's base copied to `img` and converted to extents (e2fsck -E
 * bmap2extent), then one file given unwritten extents past its data and a
 * size that ends inside them: the map shape the stat readers and the map
 * read are held to debugfs on. Returns that file's manifest entry.
 */
export async function unwrittenExtentImage(img: string): Promise<ManifestEntry> {
  const base = await buildImage(await loadRecipe('small-4k'));
  await copyImage(base.path, img);
  execFileSync('e2fsck', ['-fy', '-E', 'bmap2extent', img], { stdio: 'ignore' });
  const file = base.manifest.entries.find((e) => e.type === 'file' && (e.size ?? 0) > 8192)!;
  const blocks = Math.ceil(file.size / 4096);
  execFileSync('debugfs', ['-w', '-R', `fallocate ${file.path} ${blocks} ${blocks + 7}`, img], { stdio: 'ignore' });
  execFileSync('debugfs', ['-w', '-R', `sif ${file.path} size ${file.size + 4096 * 3 + 100}`, img], { stdio: 'ignore' });
  return file;
}
