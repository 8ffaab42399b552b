import type { Finding, RecoveryMode } from '../findings/finding.ts';
import type { Manifest } from '../image/manifest.ts';
import type { Recipe } from '../image/recipe.ts';
import { blockMapOf, readEntryState, type EntryState } from '../image/debugfs.ts';
import { recipeFile } from '../image/recipe-content.ts';
import { sha256 } from '../util/hash.ts';
import { InfraError } from '../util/errors.ts';
import { noExpectations, type DurabilityExpectations, type FileExpectation } from '../crash/expectations.ts';
import { checkFileHistory, HistoryModelError, type FileOrigin } from './file-history.ts';
import { diffDataMaps } from '../image/block-map.ts';

const PAGE = 4096;

/**
 * The content oracle: every manifest file reads back (on the host, without
 * mounting: each file's stat as debugfs would print it, read in process or
 * by debugfs, and the bytes through its block map, see readEntryState's
 * `via: 'map'`) with its size and sha256, fully block-mapped or
 * fully extent-mapped; a file the workload wrote is held to its history
 * sector by sector (checks/file-history.ts); what a completed sync made
 * durable survived; a file the ioctl refused is still block-mapped.
 * Runs on the image after journal replay and before any e2fsck repair: that
 * is what the kernel would see, and a repair may delete or clone files.
 * `recipe` regenerates the original bytes of recipe files the workload
 * wrote into; `imageFiles` holds them for a user's image (read from it);
 * without either such files cannot be checked and that is an error.
 * `basePath`: the base image the crash image was made from and the
 * manifest describes (readEntryState's `base`); `unchangedFromBase`, the
 * byte ranges of `image` nothing wrote since it was the base's copy.
 */
export async function checkContent(
  image: string,
  manifest: Manifest,
  exp: DurabilityExpectations = noExpectations,
  recovery?: RecoveryMode,
  recipe?: Recipe,
  imageFiles?: ReadonlyMap<string, FileOrigin>,
  basePath?: string,
  unchangedFromBase?: (offset: number, length: number) => boolean,
): Promise<Finding[]> {
  const historyOf = historyLookup(manifest, exp);
  const inManifest = new Set(manifest.entries.map((e) => e.path));
  // Files the workload wrote that the manifest does not list: new files.
  const extra = exp.files.filter((f) => !inManifest.has(f.path));
  const base = basePath ? { path: basePath, ...(unchangedFromBase ? { unchanged: unchangedFromBase } : {}) } : undefined;
  const states = await readStates(image, manifest, exp, extra, historyOf, base);
  const make = findingMaker(recovery);
  /** `name`: the path the bytes were read through (another name of the inode the history was written through). */
  const history = (h: FileExpectation, s: EntryState | undefined, name = h.path) =>
    historyFindings(h, s, name, imageFiles?.get(h.path) ?? originOf(h, manifest, recipe), manifest.blockSize, make);
  const findings: Finding[] = [];
  for (const e of manifest.entries) findings.push(...entryFindings(e, states.get(e.path)!, historyOf(e), history, make));
  for (const h of extra) {
    const s = states.get(h.path);
    if (!h.unchecked) findings.push(...history(h, s));
    else if (!s?.exists && h.durable > 0)
      findings.push(make('missing', h.path, 'file written and made durable by the workload is missing'));
  }
  findings.push(...mappingFindings(exp, states, make));
  return findings;
}

type ManifestEntry = Manifest['entries'][number];
type MakeFinding = (code: string, path: string, message: string, detail?: string, ino?: number, offset?: number) => Finding;

/** The write history of a manifest entry: by its path, or (hard links: a user's image may have them) by its inode, written through another name. */
function historyLookup(
  manifest: Manifest,
  exp: DurabilityExpectations,
): (e: Pick<ManifestEntry, 'path' | 'ino' | 'type'>) => FileExpectation | undefined {
  const histories = new Map(exp.files.map((f) => [f.path, f]));
  const inoOf = new Map(manifest.entries.map((e) => [e.path, e.ino]));
  const historyByIno = new Map(exp.files.flatMap((f) => (inoOf.has(f.path) ? [[inoOf.get(f.path)!, f] as const] : [])));
  return (e) => histories.get(e.path) ?? (e.type === 'file' ? historyByIno.get(e.ino) : undefined);
}

/** Every path the check reads, in one pass over the image (or one debugfs run): the manifest's, the new files', and those whose mapping the expectations judge. */
async function readStates(
  image: string,
  manifest: Manifest,
  exp: DurabilityExpectations,
  extra: readonly FileExpectation[],
  historyOf: (e: ManifestEntry) => FileExpectation | undefined,
  base: { path: string; unchanged?: (offset: number, length: number) => boolean } | undefined,
): Promise<Map<string, EntryState>> {
  const paths = [...manifest.entries.map((e) => e.path), ...extra.map((f) => f.path)];
  const mapped = [...new Set([...exp.mustBeExtents, ...exp.mustBeBlocks, ...(exp.mustBeDemigrated ?? [])])].filter(
    (p) => !paths.includes(p),
  );
  // Bytes are kept only for files held to a history; the rest are compared by hash.
  const keepBytes = new Set(
    manifest.entries
      .filter((e) => {
        const h = historyOf(e);
        return h && !h.unchecked;
      })
      .map((e) => e.path),
  );
  for (const f of exp.files) if (!f.unchecked) keepBytes.add(f.path);
  // Sizes bound each debugfs run's dumps (files the map cannot serve): a user's image may hold more data than the temp folder has room for.
  const sizes = new Map(manifest.entries.filter((e) => e.type === 'file').map((e) => [e.path, e.size]));
  return new Map(
    (
      await readEntryState(image, [...paths, ...mapped], undefined, {
        keepBytes,
        sizes,
        via: 'map',
        // A file whose map, size and blocks are the base's has the manifest's sha256 without hashing it again.
        ...(base ? { base: { ...base, entries: new Map(manifest.entries.map((e) => [e.path, e])) } } : {}),
      })
    ).map((s) => [s.path, s]),
  );
}

function findingMaker(recovery: RecoveryMode | undefined): MakeFinding {
  return (code, path, message, detail, ino, offset) => ({
    class: 'data',
    source: code === 'not-durable' || code === 'migrated-despite-error' ? 'durability' : 'content',
    code,
    name: code,
    message: `${path}: ${message}`,
    path,
    ...(ino !== undefined ? { ino } : {}),
    ...(offset !== undefined ? { offset } : {}),
    ...(recovery ? { recovery } : {}),
    ...(detail ? { detail } : {}),
  });
}

/** One manifest entry after recovery: present, its bytes as before (or as its history allows), fully mapped one way, on its old blocks. */
function entryFindings(
  e: ManifestEntry,
  s: EntryState,
  h: FileExpectation | undefined,
  history: (h: FileExpectation, s: EntryState, name: string) => Finding[],
  make: MakeFinding,
): Finding[] {
  if (!s.exists || !s.stat) return [make('missing', e.path, `${e.type} is missing after recovery`, undefined, e.ino)];
  const findings: Finding[] = [];
  if (h && !h.unchecked) findings.push(...history(h, s, e.path));
  else if (e.type !== 'dir' && !h) {
    if (s.size !== e.size) {
      findings.push(make('size-changed', e.path, `size ${s.size}, expected ${e.size}`, undefined, s.stat.ino));
    } else if (e.sha256 && s.sha256 !== e.sha256) {
      findings.push(
        make(
          'content-changed',
          e.path,
          'bytes differ from before the migration',
          `expected sha256 ${e.sha256}\nactual   sha256 ${s.sha256 ?? '(unreadable)'}`,
          s.stat.ino,
        ),
      );
    }
  }
  if (!['blocks', 'extents', 'none', 'fast-symlink', 'inline'].includes(s.stat.mapping)) {
    findings.push(make('half-converted', e.path, `mapping is ${s.stat.mapping}`, s.stat.map, s.stat.ino));
  }
  // Migration rewrites the map, never the data: every logical block must
  // stay on the physical block it had (block map or extents alike). Files
  // the workload wrote may have gained blocks: their bytes are checked instead.
  if (e.blockMap && e.type !== 'dir' && !h) {
    const diff = diffDataMaps(e.blockMap, blockMapOf(s.stat));
    if (diff)
      findings.push(make('mapping-changed', e.path, `physical mapping changed: ${diff}`, s.stat.map.slice(0, 2000), s.stat.ino));
  }
  return findings;
}

/** A file the workload wrote, held to its history: present unless it may be missing, its size in range, each sector old or new bytes. */
function historyFindings(
  h: FileExpectation,
  s: EntryState | undefined,
  name: string,
  origin: FileOrigin,
  blockSize: number,
  make: MakeFinding,
): Finding[] {
  let v;
  try {
    v = checkFileHistory(h, origin, s?.exists ? (s.bytes ?? Buffer.alloc(0)) : undefined, { blockSize });
  } catch (e) {
    if (e instanceof HistoryModelError) throw new InfraError(`cannot check ${name}: ${e.message}`);
    throw e;
  }
  if (!s?.exists)
    return v.mayBeMissing ? [] : [make('missing', name, 'file written and made durable by the workload is missing')];
  const ino = s.stat?.ino;
  const findings: Finding[] = [];
  const size = s.bytes?.length ?? s.size ?? 0;
  if (size < v.sizes.min || size > v.sizes.max) {
    const want = v.sizes.min === v.sizes.max ? `${v.sizes.min}` : `between ${v.sizes.min} and ${v.sizes.max}`;
    findings.push(make('size-changed', name, `size ${size}, expected ${want}`, undefined, ino));
  }
  const first = v.bad[0];
  if (!first) return findings;
  const where = (b: { offset: number; sector: number }) =>
    `offset ${b.offset} (sector ${b.sector}, page ${Math.floor(b.offset / PAGE)}, block ${Math.floor(b.offset / blockSize)})`;
  const more = v.badCount > 1 ? `; ${v.badCount} sectors are wrong in all` : '';
  findings.push(
    make(
      v.exact ? 'content-changed' : 'content-invalid',
      name,
      v.exact
        ? `${where(first)} holds ${first.found}, expected ${first.expected}${more}`
        : `${where(first)} holds ${first.found}, neither the old bytes nor new ones (${first.expected})${more}`,
      v.bad.map((b) => `${where(b)}: found ${b.found}; expected ${b.expected}`).join('\n'),
      ino,
      first.offset,
    ),
  );
  return findings;
}

/** What the kernel did, as read back after each ioctl (else the ioctl's answer): a migration a sync made durable is extent-mapped, one the kernel did not do is not. */
function mappingFindings(exp: DurabilityExpectations, states: ReadonlyMap<string, EntryState>, make: MakeFinding): Finding[] {
  const findings: Finding[] = [];
  for (const p of exp.mustBeExtents) {
    const s = states.get(p);
    if (s?.stat && s.stat.mapping !== 'extents') {
      findings.push(
        make(
          'not-durable',
          p,
          `the kernel converted it and a sync, fsync or umount completed after, but the ${s.stat.type === 'directory' ? 'directory' : 'file'} is ${s.stat.mapping}-mapped`,
          `flags 0x${s.stat.flags.toString(16)}`,
          s.stat.ino,
        ),
      );
    }
  }
  for (const p of exp.mustBeDemigrated ?? []) {
    const s = states.get(p);
    if (s?.stat && s.stat.mapping !== 'blocks') {
      findings.push(
        make(
          'not-durable',
          p,
          `the kernel converted it back to a block map (chattr -e) and a sync, fsync or umount completed after, but the file is ${s.stat.mapping}-mapped`,
          `flags 0x${s.stat.flags.toString(16)}`,
          s.stat.ino,
        ),
      );
    }
  }
  for (const p of exp.mustBeBlocks) {
    const s = states.get(p);
    if (s?.stat && s.stat.mapping === 'extents') {
      const r = exp.migrations.findLast((m) => m.path === p);
      const said =
        r?.ret === 0
          ? 'the ioctl returned 0 but the kernel read the file back block-mapped'
          : `the ioctl refused the migration${r ? ` (errno ${r.errno})` : ''}`;
      findings.push(
        make(
          'migrated-despite-error',
          p,
          `${said}, but the file is extent-mapped after recovery`,
          `flags 0x${s.stat.flags.toString(16)}`,
          s.stat.ino,
        ),
      );
    }
  }
  return findings;
}

/** A new file's origin: nothing. One object, never written, so that file-history's versions of new files are built once. */
const newFileOrigin: FileOrigin = { bytes: Buffer.alloc(0), data: [] };

/**
 * Recipe files already regenerated and checked, by recipe, path and
 * manifest hash: one object per file for a whole run (file-history keeps
 * its versions by origin), and no regeneration per state. Bounded.
 */
const recipeOrigins = new Map<string, FileOrigin>();

/** The file before the workload: regenerated from the recipe (checked against the manifest), or nothing. */
function originOf(h: FileExpectation, manifest: Manifest, recipe: Recipe | undefined): FileOrigin {
  if (h.origin === 'new') return newFileOrigin;
  if (!recipe)
    throw new InfraError(
      `cannot check ${h.path}: the workload wrote into a file of the image and its recipe, which holds the original bytes, is not known here`,
    );
  const e = manifest.entries.find((x) => x.path === h.path);
  const key = JSON.stringify([recipe.name, recipe.seed, recipe.entries, h.path, e?.sha256 ?? null]);
  const known = recipeOrigins.get(key);
  if (known) return known;
  const f = regenerated(h, recipe, e);
  if (recipeOrigins.size >= 256) recipeOrigins.delete(recipeOrigins.keys().next().value!);
  recipeOrigins.set(key, f);
  return f;
}

function regenerated(h: FileExpectation, recipe: Recipe, e: ManifestEntry | undefined): FileOrigin {
  const f = recipeFile(recipe, h.path);
  if (!f) throw new InfraError(`cannot check ${h.path}: recipe ${recipe.name} has no regular file there`);
  if (e?.sha256 && sha256(f.bytes) !== e.sha256) {
    throw new InfraError(
      `cannot check ${h.path}: its bytes regenerated from recipe ${recipe.name} do not match the image's manifest (sha256 ${sha256(f.bytes)}, manifest ${e.sha256}): the base image or the generator changed`,
    );
  }
  return f;
}
