import { readFile, readdir } from 'node:fs/promises';
import { join, resolve, basename, extname } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../util/errors.ts';
import { didYouMean } from '../util/suggest.ts';
import { sha256 } from '../util/hash.ts';
import { recipesDir } from '../util/paths.ts';
import { YamlSource } from '../util/yaml-source.ts';

/**
 * An image recipe: the filesystem variant and the entries it holds, by
 * shape. Block counts may be written relative to the block map's boundaries
 * (`ind-last`, `dind-first`, `tind-first`, `+N`/`-N`), so one recipe text
 * means the same boundary on 1 KiB and 4 KiB blocks.
 */
const blockCount = z.union([
  z.number().int().nonnegative(),
  z
    .string()
    .regex(
      /^(direct|ind-first|ind-last|dind-first|dind-last|tind-first)([+-]\d+)?$|^\d+$/,
      'a block count: a number or direct|ind-first|ind-last|dind-first|dind-last|tind-first, optionally +N/-N',
    ),
]);
const range = z.tuple([blockCount, blockCount]);
const path = z.string().regex(/^\/[A-Za-z0-9._/-]+$/, 'an absolute path of letters, digits, ".", "_", "-"');

/**
 * Physical layout of a file, made with libext2fs after mkfs (see
 * harness/image/layout.ts). The file's data blocks, in logical order with
 * holes skipped, are cut into physical runs: one per `data` range, or
 * `split` into runs of N blocks, or the explicit `runs`.
 */
const layoutRun = z.union([
  z.number().int().positive(),
  z.strictObject({
    blocks: z.number().int().positive(),
    /** Physical block of the run's first block; default: after the previous run (plus its gap). */
    at: z.number().int().nonnegative().optional(),
    /** Free blocks left before this run; default 0 (1 with contiguous: false). */
    gap: z.number().int().nonnegative().optional(),
  }),
]);
const layout = z.strictObject({
  /** Physical block of the file's first block, or "next": the first free stretch after the previous layout that holds it. */
  start: z.union([z.number().int().nonnegative(), z.literal('next')]).optional(),
  /** Runs follow each other with no free block between them (default true); false leaves one free block between runs. */
  contiguous: z.boolean().optional(),
  /** Cut the data into runs of `blocks` blocks, `gap` (default 1) free blocks apart. */
  split: z.strictObject({ blocks: z.number().int().positive(), gap: z.number().int().nonnegative().optional() }).optional(),
  /** Explicit physical runs, in logical order; their lengths add up to the file's data blocks. */
  runs: z.array(layoutRun).min(1).optional(),
  /**
   * Where the indirect blocks go: inline (default, where libext2fs and the
   * kernel put them: each just before the first data block it maps), separate
   * (together, in the first free stretch after the file's data), or {at: N}.
   */
  indirect: z.union([z.enum(['inline', 'separate']), z.strictObject({ at: z.number().int().nonnegative() })]).optional(),
  /** Alternate runs of `blocks` data blocks of this file and of `with` (a later layout file) in one stretch. */
  interleave: z.strictObject({ with: z.string(), blocks: z.number().int().positive() }).optional(),
});

/**
 * Who owns an entry (for a small-files entry, each of its files): set with
 * debugfs after mkfs, before quota usage is counted. A project id needs
 * 256-byte inodes (style: modern).
 */
const owner = z.strictObject({
  uid: z.number().int().min(0).max(65535).optional(),
  gid: z.number().int().min(0).max(65535).optional(),
  project: z.number().int().min(0).max(65535).optional(),
});
/** The quota types ext4's quota feature tracks in hidden inodes (mkfs -O quota -E quotatype=...). */
const quotaTypes = ['usrquota', 'grpquota', 'prjquota'] as const;

const entry = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('file'),
    path,
    /** File length in blocks. */
    blocks: blockCount,
    /** Extra bytes after the last whole block (a partial tail block). */
    extra_bytes: z.number().int().nonnegative().optional(),
    /** Block ranges [from, to) that hold data; everything else is a hole. Default: all. */
    data: z.array(range).optional(),
    /** Interleave filler allocation so the file's blocks are scattered. */
    fragmented: z.boolean().optional(),
    /** Exact physical placement (instead of where mkfs -d puts the file). */
    layout: layout.optional(),
    owner: owner.optional(),
  }),
  z.strictObject({ kind: z.literal('dir'), path, entries: z.number().int().nonnegative(), owner: owner.optional() }),
  z.strictObject({ kind: z.literal('symlink'), path, target_length: z.number().int().positive().max(4000) }),
  z.strictObject({
    kind: z.literal('small-files'),
    path,
    count: z.number().int().positive().max(10000),
    size: z.number().int().positive(),
    owner: owner.optional(),
  }),
]);

export const recipeSchema = z.strictObject({
  description: z.string().optional(),
  filesystem: z.strictObject({
    block_size: z.union([z.literal(1024), z.literal(4096)]),
    /** ext3: 128-byte inodes, no metadata_csum (what real chattr +e users convert). modern: 256-byte inodes, metadata_csum. */
    style: z.enum(['ext3', 'modern']),
    /** Fast commits (mkfs -O fast_commit, so the journal gets its fast-commit area: jsb s_num_fc_blks). */
    fast_commit: z.boolean().optional(),
    /** ext4's own quota (-O quota): usage of these types is kept in hidden inodes and checked by e2fsck; prjquota needs style modern. */
    quota: z.array(z.enum(quotaTypes)).min(1).optional(),
    size_mb: z.number().int().min(8).max(4096),
    /**
     * false: no flex_bg (every group keeps its bitmaps and inode table, as on
     * ext3); N: pack the metadata of N groups together (mkfs -G N). Default:
     * mke2fs's (flex_bg, 16).
     */
    flex_bg: z
      .union([
        z.literal(false),
        z
          .number()
          .int()
          .min(2)
          .max(1 << 20)
          .refine((n) => (n & (n - 1)) === 0, 'a power of two'),
      ])
      .optional(),
  }),
  seed: z.number().int().nonnegative().optional(),
  entries: z.array(entry).min(1),
});

export type RecipeEntry = z.infer<typeof entry>;
export type FileLayout = z.infer<typeof layout>;
export interface Recipe {
  name: string;
  file: string;
  hash: string;
  text: string;
  description?: string;
  blockSize: 1024 | 4096;
  style: 'ext3' | 'modern';
  fastCommit: boolean;
  /** The quota types tracked (empty: no quota feature). */
  quota: Array<(typeof quotaTypes)[number]>;
  sizeMb: number;
  /** undefined: mke2fs's default; false: no flex_bg; N: groups per flex group. */
  flexBg?: false | number;
  seed: number;
  entries: RecipeEntry[];
  /** The parsed text, so that build-time errors (an impossible layout) can name file:line. */
  source?: YamlSource;
}

/** A recipe by name (vm-images/recipes/NAME.yaml) or by path. */
export async function loadRecipe(nameOrPath: string): Promise<Recipe> {
  const isPath = nameOrPath.includes('/') || nameOrPath.endsWith('.yaml');
  const file = isPath ? resolve(nameOrPath) : join(recipesDir, `${nameOrPath}.yaml`);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    const names = await listRecipeNames();
    throw new ConfigError(`unknown recipe "${nameOrPath}".${didYouMean(nameOrPath, names)} Recipes: ${names.join(', ')}`);
  }
  // A write-log run loads its recipe for every state it checks: parsed once per text, a copy handed out each time.
  const known = parsedRecipes.get(file);
  if (known?.text === text) return copyRecipe(known.recipe);
  const recipe = parseRecipe(file, text);
  parsedRecipes.set(file, { text, recipe: copyRecipe(recipe) });
  return recipe;
}

/** A copy a caller may change: the data cloned, the parsed YAML (never changed once parsed) shared. */
function copyRecipe({ source, ...data }: Recipe): Recipe {
  return { ...structuredClone(data), ...(source ? { source } : {}) };
}

/** The last text of each recipe file parsed, and what it parsed to: a file edited since is parsed again. */
const parsedRecipes = new Map<string, { text: string; recipe: Recipe }>();

export function parseRecipe(file: string, text: string): Recipe {
  const src = YamlSource.parse(file, text);
  const r = recipeSchema.safeParse(src.value());
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw src.error(issue.path as Array<string | number>, `${issue.message} at "${issue.path.join('.')}"`);
  }
  const d = r.data;
  if (d.filesystem.quota?.includes('prjquota') && d.filesystem.style !== 'modern')
    throw src.error(['filesystem', 'quota'], 'prjquota needs 256-byte inodes for project ids (filesystem.style: modern)');
  const paths = new Set<string>();
  d.entries.forEach((e, i) => {
    if (paths.has(e.path)) throw src.error(['entries', i, 'path'], `duplicate path ${e.path}`);
    paths.add(e.path);
    if ('owner' in e && e.owner?.project !== undefined && d.filesystem.style !== 'modern')
      throw src.error(
        ['entries', i, 'owner', 'project'],
        `${e.path}: a project id needs 256-byte inodes (filesystem.style: modern)`,
      );
    if (e.kind === 'file' && e.layout && e.fragmented)
      throw src.error(
        ['entries', i, 'layout'],
        `${e.path}: a file has either "fragmented" or "layout", not both (layout: { split: ... } scatters it exactly)`,
      );
  });
  return {
    name: basename(file, extname(file)),
    file,
    hash: sha256(text),
    text,
    ...(d.description ? { description: d.description } : {}),
    blockSize: d.filesystem.block_size,
    style: d.filesystem.style,
    fastCommit: d.filesystem.fast_commit ?? false,
    quota: d.filesystem.quota ?? [],
    sizeMb: d.filesystem.size_mb,
    ...(d.filesystem.flex_bg !== undefined ? { flexBg: d.filesystem.flex_bg } : {}),
    seed: d.seed ?? 1,
    entries: d.entries,
    source: src,
  };
}

/** Resolve a block count against the block map of a block size. */
export function resolveBlocks(v: number | string, blockSize: number): number {
  if (typeof v === 'number') return v;
  if (/^\d+$/.test(v)) return Number(v);
  const p = blockSize / 4;
  const m = /^([a-z-]+?)([+-]\d+)?$/.exec(v)!;
  const base: Record<string, number> = {
    direct: 12,
    'ind-first': 13,
    'ind-last': 12 + p,
    'dind-first': 12 + p + 1,
    'dind-last': 12 + p + p * p,
    'tind-first': 12 + p + p * p + 1,
  };
  return base[m[1]!]! + Number(m[2] ?? 0);
}

/** The recipes there are: vm-images/recipes/*.yaml by name. */
export async function listRecipeNames(): Promise<string[]> {
  try {
    return (await readdir(recipesDir))
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => f.slice(0, -5))
      .sort();
  } catch {
    return [];
  }
}

/** What a recipe's filesystem holds, by kind: scenarios check the paths their steps name against it. */
export function recipePaths(recipe: Recipe): { files: Set<string>; dirs: Set<string>; symlinks: Set<string> } {
  const files = new Set<string>();
  const dirs = new Set<string>(['/']);
  const symlinks = new Set<string>();
  const addParents = (p: string) => {
    for (let d = p.slice(0, p.lastIndexOf('/')); d; d = d.slice(0, d.lastIndexOf('/'))) dirs.add(d);
  };
  for (const e of recipe.entries) {
    addParents(e.path);
    if (e.kind === 'file') files.add(e.path);
    else if (e.kind === 'dir') dirs.add(e.path);
    else if (e.kind === 'symlink') symlinks.add(e.path);
    else {
      dirs.add(e.path);
      for (let i = 0; i < e.count; i++) files.add(`${e.path}/f${i}`);
    }
  }
  return { files, dirs, symlinks };
}
