import { recipeBytes } from './build.ts';
import { resolveBlocks, type Recipe, type RecipeEntry } from './recipe.ts';

/**
 * A recipe file's bytes and data ranges, regenerated on the host exactly as
 * harness/image/build.ts writes them (writeSparse, small-files): the content
 * oracle needs the original bytes of a recipe file the workload writes into,
 * and needs no copy of the base image for it. test/checks/recipe-content.test.ts
 * holds this to every manifest's sha256.
 */
export interface RecipeFile {
  bytes: Buffer;
  /** Byte ranges [start, end) written with data; the rest is a hole (mkfs -d keeps holes). */
  data: Array<[number, number]>;
}

type FileEntry = Extract<RecipeEntry, { kind: 'file' }>;

/** The file at `path` as the recipe builds it, or undefined when the recipe has no regular file there. */
export function recipeFile(recipe: Recipe, path: string): RecipeFile | undefined {
  for (const e of recipe.entries) {
    if (e.kind === 'file' && e.path === path) return sparseFile(recipe, e);
    if (e.kind === 'small-files' && path.startsWith(`${e.path}/f`)) {
      const i = Number(path.slice(e.path.length + 2));
      if (Number.isInteger(i) && i >= 0 && i < e.count && path === `${e.path}/f${i}`) {
        return { bytes: recipeBytes(recipe.seed, `${e.path}/${i}`, e.size), data: [[0, e.size]] };
      }
    }
  }
  return undefined;
}

/** writeSparse's layout: each data range in 1 MiB pieces keyed by their offset. */
function sparseFile(recipe: Recipe, e: FileEntry): RecipeFile {
  const B = recipe.blockSize;
  const blocks = resolveBlocks(e.blocks, B);
  const size = blocks * B + (e.extra_bytes ?? 0);
  const ranges = (e.data ?? [[0, blocks + (e.extra_bytes ? 1 : 0)]]).map(
    ([a, b]) => [resolveBlocks(a, B), resolveBlocks(b, B)] as const,
  );
  const bytes = Buffer.alloc(size);
  const data: Array<[number, number]> = [];
  for (const [a, b] of ranges) {
    const start = a * B;
    const end = Math.min(b * B, size);
    if (end <= start) continue;
    data.push([start, end]);
    for (let off = start; off < end; off += 1 << 20) {
      const len = Math.min(1 << 20, end - off);
      recipeBytes(recipe.seed, `${e.path}@${off}`, len).copy(bytes, off);
    }
  }
  return { bytes, data };
}
