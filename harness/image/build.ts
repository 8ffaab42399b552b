import { mkdir, open, rename, rm, writeFile, readFile, symlink, stat } from 'node:fs/promises';
import { createCipheriv, createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { InfraError } from '../util/errors.ts';
import { cacheDir } from '../util/paths.ts';
import { hashJson } from '../util/hash.ts';
import { TempDir } from '../util/tempdir.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import { CacheEntry, useCacheEntry } from '../util/cache-entry.ts';
import type { Manifest, ManifestEntry } from './manifest.ts';
import { resolveBlocks, type Recipe, type RecipeEntry } from './recipe.ts';
import { debugfsBatch, manifestEntry, readEntryState } from './debugfs.ts';
import { makeLayouts, type LayoutSource } from './make-layout.ts';

/** Bump when the builder's output for the same recipe changes (3: manifests record block maps). */
const BUILDER_VERSION = 3;

export interface BaseImage {
  /** Raw ext4 image in the cache. Never written: cases use overlays or copies. */
  path: string;
  manifest: Manifest;
  recipeHash: string;
  /**
   * Content digest of base.img as sealed in the cache: a rebuilt image
   * (mkfs picks new UUIDs) is another disk, so a saved VM state records it.
   */
  digest?: string;
  /** recipe: built by qcrash into the cache; image: a user's own file, used where it is (user-image.ts). Absent: recipe. */
  source?: 'recipe' | 'image';
  /**
   * How a case's disk is made from it: a sparse raw copy (a reflink where the
   * filesystem can), or a qcow2 overlay with the base as its read-only
   * backing file, for a user's image that may be too large to copy per case.
   */
  caseDisk?: 'raw' | 'qcow2';
}

/** The files of a base image's cache entry. */
export const imageEntryFiles = ['base.img', 'manifest.json'] as const;

/** Deterministic random bytes (AES-CTR keyed by seed and name): the same recipe builds the same image. */
export function recipeBytes(seed: number, name: string, size: number): Buffer {
  const key = createHash('sha256').update(`${seed}/${name}`).digest().subarray(0, 16);
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

/**
 * Build (or reuse) the base image of a recipe: populate a directory, mkfs
 * with the extent feature off so every file is block-mapped, add fragmented
 * files through debugfs, then turn the extent feature on. The fresh image
 * must be clean under e2fsck -fn. Cached by recipe hash and sealed by
 * content (cache-entry.ts): a changed, truncated or missing base.img or
 * manifest is rebuilt, never used. Built in a temp dir and renamed into
 * place with its seal inside, so a crash mid-build leaves nothing half made.
 */
export async function buildImage(recipe: Recipe): Promise<BaseImage> {
  const recipeHash = hashJson({ BUILDER_VERSION, text: recipe.text }).slice(0, 16);
  const dir = cacheDir('images', `${recipe.name}-${recipeHash}`);
  const entry = CacheEntry.folder('base image', dir, imageEntryFiles);
  await useCacheEntry(entry, () => buildImageInto(dir, recipe));
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  const digest = (await entry.readSeal()).files['base.img']?.digest;
  return { path: join(dir, 'base.img'), manifest, recipeHash, ...(digest ? { digest } : {}) };
}

async function buildImageInto(dir: string, recipe: Recipe): Promise<void> {
  await using tmp = await TempDir.create('image');
  const hostFiles = tmp.join('host');
  const staged = await stageEntries(recipe, tmp.join('root'), hostFiles);
  const img = tmp.join('base.img');
  const features = await mkfs(recipe, tmp.join('root'), img);

  // Layouts first: the fragmented files' first-fit allocation then goes around them.
  if (staged.layouts.length) await makeLayouts(img, recipe, staged.layouts);
  if (staged.late.length) await addFragmented(img, hostFiles, staged.late, recipe.blockSize);

  await runOk(await tool('tune2fs'), ['-O', recipe.fastCommit ? 'extent,fast_commit' : 'extent', img]);
  const fsck = await runOk(await tool('e2fsck'), ['-fn', img], { okExitCodes: [0, 4] });
  if (fsck.exitCode !== 0) throw new InfraError(`fresh image of recipe ${recipe.name} is not clean:\n${fsck.stdout}`);

  const manifest = await makeManifest(img, recipe, staged.shapes, features);
  await publishImage(tmp, img, manifest, dir);
}

type LateFile = { entry: Extract<RecipeEntry, { kind: 'file' }>; host: string };

/**
 * The recipe's entries as a tree for `mkfs -d` under `stage`. Files with a
 * layout go in empty (qcrash-layout gives them their blocks) and fragmented
 * files are left out (added after mkfs): their bytes wait in `hostFiles`.
 */
async function stageEntries(
  recipe: Recipe,
  stage: string,
  hostFiles: string,
): Promise<{ late: LateFile[]; layouts: LayoutSource[]; shapes: Map<string, string> }> {
  await mkdir(stage, { recursive: true });
  await mkdir(hostFiles, { recursive: true });
  const late: LateFile[] = [];
  const layouts: LayoutSource[] = [];
  const shapes = new Map<string, string>();
  for (const [index, e] of recipe.entries.entries()) {
    shapes.set(e.path, shapeName(e));
    const target = join(stage, e.path);
    await mkdir(e.kind === 'dir' ? target : dirname(target), { recursive: true });
    switch (e.kind) {
      case 'file': {
        if (e.layout) {
          // mkfs -d makes the inode empty; qcrash-layout gives it its blocks.
          const host = join(hostFiles, `layout-${layouts.length}`);
          await writeSparse(host, recipe, e);
          await writeFile(target, '');
          layouts.push({
            entry: index,
            path: e.path,
            size: fileSize(recipe, e),
            data: dataRanges(recipe, e),
            layout: e.layout,
            host,
          });
        } else if (e.fragmented) {
          const host = join(hostFiles, `late-${late.length}`);
          await writeSparse(host, recipe, e);
          late.push({ entry: e, host });
        } else await writeSparse(target, recipe, e);
        break;
      }
      case 'dir':
        // Long names so that the directory needs several blocks of its own.
        for (let i = 0; i < e.entries; i++)
          await writeFile(join(target, `entry-${String(i).padStart(5, '0')}-${'x'.repeat(40)}`), '');
        break;
      case 'symlink': {
        const t = `/${recipeBytes(recipe.seed, e.path, e.target_length)
          .toString('hex')
          .slice(0, e.target_length - 1)}`;
        await symlink(t, target);
        break;
      }
      case 'small-files':
        await mkdir(target, { recursive: true });
        for (let i = 0; i < e.count; i++)
          await writeFile(join(target, `f${i}`), recipeBytes(recipe.seed, `${e.path}/${i}`, e.size));
        break;
    }
  }
  return { late, layouts, shapes };
}

/** mkfs.ext4 of the recipe's style from the staged tree, block-mapped (the extent feature comes after the files); returns the -O features. */
async function mkfs(recipe: Recipe, stage: string, img: string): Promise<string[]> {
  const features = [
    '^extent',
    '^64bit',
    ...(recipe.style === 'ext3' ? ['^metadata_csum', '^metadata_csum_seed', '^orphan_file'] : ['metadata_csum']),
  ];
  if (recipe.flexBg === false) features.push('^flex_bg');
  await runOk(
    await tool('mkfs.ext4'),
    [
      '-F',
      '-q',
      '-b',
      String(recipe.blockSize),
      '-I',
      recipe.style === 'ext3' ? '128' : '256',
      '-O',
      features.join(','),
      '-E',
      'root_owner=0:0,nodiscard',
      ...(typeof recipe.flexBg === 'number' ? ['-G', String(recipe.flexBg)] : []),
      '-d',
      stage,
      img,
      `${recipe.sizeMb}M`,
    ],
    { env: { MKE2FS_CONFIG: '/etc/mke2fs.conf' } },
  );
  return features;
}

/** The image and its manifest, sealed in a staging folder inside `tmp`, renamed into the cache at `dir`. */
async function publishImage(tmp: TempDir, img: string, manifest: Manifest, dir: string): Promise<void> {
  await mkdir(dirname(dir), { recursive: true });
  const staged = tmp.join('out');
  await mkdir(staged);
  await rename(img, join(staged, 'base.img'));
  await writeJsonAtomic(join(staged, 'manifest.json'), manifest);
  await CacheEntry.folder('base image', staged, imageEntryFiles).seal();
  try {
    await rename(staged, dir);
  } catch (e) {
    // Another builder won the race with the same recipe: use theirs.
    if (!['ENOTEMPTY', 'EEXIST'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
  }
}

function shapeName(e: RecipeEntry): string {
  return e.path.split('/').pop()!;
}

function fileSize(recipe: Recipe, e: Extract<RecipeEntry, { kind: 'file' }>): number {
  return resolveBlocks(e.blocks, recipe.blockSize) * recipe.blockSize + (e.extra_bytes ?? 0);
}

/** The logical block ranges [from, to) that hold data, clipped to the file, sorted and merged. */
function dataRanges(recipe: Recipe, e: Extract<RecipeEntry, { kind: 'file' }>): Array<[number, number]> {
  const B = recipe.blockSize;
  const blocks = resolveBlocks(e.blocks, B);
  const end = Math.ceil(fileSize(recipe, e) / B);
  const ranges = (e.data ?? [[0, blocks + (e.extra_bytes ? 1 : 0)]])
    .map(([a, b]) => [resolveBlocks(a, B), Math.min(resolveBlocks(b, B), end)] as [number, number])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  const out: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = out.at(-1);
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else out.push([...r]);
  }
  return out;
}

/** Write the file's data ranges with recipe bytes; the rest stays a hole (mkfs -d keeps holes). */
async function writeSparse(path: string, recipe: Recipe, e: Extract<RecipeEntry, { kind: 'file' }>): Promise<void> {
  const B = recipe.blockSize;
  const blocks = resolveBlocks(e.blocks, B);
  const size = blocks * B + (e.extra_bytes ?? 0);
  const ranges = (e.data ?? [[0, blocks + (e.extra_bytes ? 1 : 0)]]).map(
    ([a, b]) => [resolveBlocks(a, B), resolveBlocks(b, B)] as const,
  );
  const fh = await open(path, 'w');
  try {
    await fh.truncate(size);
    for (const [a, b] of ranges) {
      const start = a * B;
      const end = Math.min(b * B, size);
      if (end <= start) continue;
      // Write in 1 MiB pieces so a large sparse file never needs its size in memory.
      for (let off = start; off < end; off += 1 << 20) {
        const len = Math.min(1 << 20, end - off);
        await fh.write(recipeBytes(recipe.seed, `${e.path}@${off}`, len), 0, len, off);
      }
    }
  } finally {
    await fh.close();
  }
}

/**
 * Scatter a file's blocks: allocate one-block fillers, free every other
 * one, write the file into the holes (libext2fs allocates first-fit), then
 * free the remaining fillers. Done while the extent feature is still off,
 * so debugfs writes block-mapped inodes.
 */
async function addFragmented(
  img: string,
  hostDir: string,
  late: Array<{ entry: { path: string }; host: string }>,
  B: number,
): Promise<void> {
  const filler = join(hostDir, 'filler');
  await writeFile(filler, recipeBytes(0, 'filler', B));
  for (const { entry, host } of late) {
    const st = await stat(host);
    const nFill = Math.min(2 * Math.ceil(st.size / B) + 8, 4000);
    const cmds: string[] = [];
    const parent = dirname(entry.path);
    if (parent !== '/') cmds.push(`mkdir ${parent}`);
    cmds.push('mkdir /.qcrash-fill');
    for (let i = 0; i < nFill; i++) cmds.push(`write ${filler} /.qcrash-fill/${i}`);
    for (let i = 1; i < nFill; i += 2) cmds.push(`rm /.qcrash-fill/${i}`);
    cmds.push(`write ${host} ${entry.path}`);
    for (let i = 0; i < nFill; i += 2) cmds.push(`rm /.qcrash-fill/${i}`);
    cmds.push('rmdir /.qcrash-fill');
    await debugfsBatch(img, cmds, { write: true });
  }
}

async function makeManifest(img: string, recipe: Recipe, shapes: Map<string, string>, features: string[]): Promise<Manifest> {
  const paths: string[] = [];
  for (const e of recipe.entries) {
    paths.push(e.path);
    if (e.kind === 'small-files') for (let i = 0; i < e.count; i++) paths.push(`${e.path}/f${i}`);
  }
  const states = await readEntryState(img, paths);
  const entries: ManifestEntry[] = states.map((s) => {
    if (!s.exists || !s.stat) throw new InfraError(`built image lacks ${s.path}`);
    const t = s.stat.type === 'regular' ? 'file' : s.stat.type === 'directory' ? 'dir' : 'symlink';
    return manifestEntry({ ...s, stat: s.stat }, t, shapes.get(s.path) ?? 'small-file');
  });
  return { recipe: recipe.name, recipeHash: recipe.hash, blockSize: recipe.blockSize, features, entries };
}

export async function removeCachedImage(base: BaseImage): Promise<void> {
  await rm(dirname(base.path), { recursive: true, force: true });
}
