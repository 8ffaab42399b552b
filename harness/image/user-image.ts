import { access, constants, mkdir, readFile, rename, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { run } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { ConfigError, InfraError } from '../util/errors.ts';
import { cacheDir } from '../util/paths.ts';
import { hashJson } from '../util/hash.ts';
import { TempDir } from '../util/tempdir.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import { CacheEntry, contentDigest, useCacheEntry } from '../util/cache-entry.ts';
import type { BaseImage } from './build.ts';
import type { Manifest, ManifestEntry } from './manifest.ts';
import { debugfsBatch, debugfsPath, manifestEntry, readEntryState, UnaddressablePathError } from './debugfs.ts';
import { runE2fsck } from './e2fsck.ts';

/**
 * A user's own image: a block-mapped ext3/ext4 filesystem they are about to
 * convert, used where a recipe's base image would be. It is never written:
 * every tool opens it read-only (dumpe2fs, debugfs without -w, e2fsck -n)
 * and case disks are copy-on-write overlays with it as their read-only
 * backing file (disk.ts). Its manifest is read with debugfs, without
 * mounting, and cached by the image's content.
 */

/** Bump when the manifest read from an image changes for the same image. */
const READER_VERSION = 1;

/** Bad input about the image itself; callers say where it was named (--image, or a scenario's file:line). */
export class UserImageError extends ConfigError {}

/** What the superblock says, the parts qcrash checks. */
export interface ImageSuperblock {
  blockSize: number;
  features: string[];
  state: string;
  /** Journal in an inode of this filesystem (not an external journal device). */
  internalJournal: boolean;
}

/** Parse `dumpe2fs -h` (e2fsprogs 1.47). */
export function parseSuperblock(text: string): ImageSuperblock | undefined {
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim();
  const features = field('Filesystem features');
  const blockSize = Number(field('Block size'));
  if (features === undefined || !Number.isInteger(blockSize)) return undefined;
  return {
    blockSize,
    features: features === '(none)' ? [] : features.split(/\s+/),
    state: field('Filesystem state') ?? '',
    internalJournal: field('Journal inode') !== undefined,
  };
}

/**
 * Everything about the image that makes it unusable, in one message each,
 * with what to do. Only reads the image.
 */
export async function inspectImage(path: string): Promise<ImageSuperblock> {
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new UserImageError(e.code === 'ENOENT' ? 'no such file' : `cannot read it: ${e.message}`);
  });
  if (st.isDirectory())
    throw new UserImageError('is a directory: give the filesystem image file (e.g. made with dd from the device)');
  if (!st.isFile())
    throw new UserImageError(
      `not a regular file: copy the filesystem into an image file first (dd if=DEVICE of=FILE.img bs=4M), and never test a device that is in use`,
    );
  await access(path, constants.R_OK).catch((e: NodeJS.ErrnoException) => {
    throw new UserImageError(`cannot read it (${e.code ?? e.message}): qcrash needs to read the image (it never writes it)`);
  });
  const r = await run(await tool('dumpe2fs'), ['-h', path], { env: { LANG: 'C', LC_ALL: 'C' } });
  const sb = r.exitCode === 0 ? parseSuperblock(r.stdout) : undefined;
  if (!sb) {
    const format = await imageFormat(path);
    if (format && format !== 'raw')
      throw new UserImageError(
        `a ${format} image, not a raw filesystem image: convert it with \`qemu-img convert -O raw ${path} FILE.img\` and give FILE.img`,
      );
    const why =
      (r.stderr || r.stdout)
        .trim()
        .split('\n')
        .filter((l) => !/^dumpe2fs \d/.test(l))
        .pop() ?? `dumpe2fs exit ${r.exitCode}`;
    throw new UserImageError(
      `not an ext2/ext3/ext4 filesystem (${why.replace(/^dumpe2fs: /, '').replace(` while trying to open ${path}`, '')}): qcrash tests a block-mapped ext3/ext4 filesystem image, the whole filesystem and nothing around it (not a disk with a partition table)`,
    );
  }
  const has = (f: string) => sb.features.includes(f);
  const missing: string[] = [];
  if (!has('has_journal')) missing.push(`it has no journal (an ext2 filesystem): add one with \`tune2fs -j ${path}\``);
  else if (!sb.internalJournal)
    missing.push(
      'its journal is on an external device: qcrash gives the guest one disk; test a copy with an internal journal (`tune2fs -O ^has_journal` then `tune2fs -j`)',
    );
  if (!has('extent'))
    missing.push(
      `the extent feature is off, and chattr +e needs it: turn it on with \`tune2fs -O extent ${path}\` (the step before converting: it rewrites no file, existing files stay block-mapped)`,
    );
  if (missing.length) throw new UserImageError(`cannot be migrated as it is: ${missing.join('; ')}`);
  if (has('needs_recovery')) {
    throw new UserImageError(
      `the journal needs recovery (the filesystem is mounted, or was not unmounted cleanly): unmount it, or replay the journal with \`e2fsck -E journal_only ${path}\`, then run again`,
    );
  }
  if (sb.blockSize > 4096)
    throw new UserImageError(
      `it has ${sb.blockSize}-byte blocks; the x86-64 guest kernel mounts block sizes up to its 4096-byte page`,
    );
  return sb;
}

/** qemu-img's idea of the file's format ("raw", "qcow2"...), or undefined when it cannot tell. */
async function imageFormat(path: string): Promise<string | undefined> {
  const r = await run(await tool('qemu-img'), ['info', '--output=json', path]);
  if (r.exitCode !== 0) return undefined;
  try {
    return (JSON.parse(r.stdout) as { format?: string }).format;
  } catch {
    return undefined;
  }
}

/** The files of a user image's cache entry: only what qcrash read from it, never the image itself. */
export const userImageEntryFiles = ['manifest.json'] as const;

const opened = new Map<string, { signature: string; image: Promise<BaseImage> }>();

/**
 * A user's image as a base image: checked, its manifest read (or taken from
 * the cache, keyed by the image's content), in this process once per file
 * while the file is unchanged. `path` is used where it is, never copied
 * into the cache.
 */
export async function openUserImage(given: string): Promise<BaseImage> {
  const path = resolve(given);
  const st = await stat(path).catch(() => undefined);
  const signature = st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}` : 'absent';
  const known = opened.get(path);
  if (known && known.signature === signature) return known.image;
  const image = readUserImage(path);
  opened.set(path, { signature, image });
  image.catch(() => opened.delete(path));
  return image;
}

/**
 * Whether the file changed (size, mtime, inode) since this process opened it:
 * qcrash never writes it, but someone else may have during a run, and its
 * overlays and manifest would then describe another filesystem.
 */
export async function userImageChanged(given: string): Promise<boolean> {
  const path = resolve(given);
  const known = opened.get(path);
  if (!known) return false;
  const st = await stat(path).catch(() => undefined);
  return (st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}` : 'absent') !== known.signature;
}

async function readUserImage(path: string): Promise<BaseImage> {
  const sb = await inspectImage(path);
  const digest = await contentDigest(path);
  const key = hashJson({ READER_VERSION, digest }).slice(0, 16);
  const dir = cacheDir('user-images', key);
  const entry = CacheEntry.folder('user image manifest', dir, userImageEntryFiles, { image: digest });
  await useCacheEntry(entry, async () => {
    // e2fsck -n opens the image read-only. A filesystem that is not clean
    // before the migration would have its old problems blamed on it.
    const fsck = await runE2fsck(path, 'check');
    if (fsck.exit.code !== 0) {
      const lines = fsck.text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !/^(Pass \d|e2fsck \d|\S+: \d+\/\d+ files)/.test(l) && !/^Checking /.test(l));
      throw new UserImageError(
        `not clean: e2fsck -fn exits ${fsck.exit.code} (${lines.slice(0, 3).join(' / ') || 'see e2fsck -fn'}); qcrash would blame these problems on the migration. Repair the filesystem first (\`e2fsck -fy ${path}\`, on a copy if the image matters), then run again`,
      );
    }
    const manifest = await readImageManifest(path, sb, key);
    await using tmp = await TempDir.create('user-image');
    const staged = tmp.join('entry');
    await mkdir(staged);
    await writeJsonAtomic(join(staged, 'manifest.json'), manifest);
    await CacheEntry.folder('user image manifest', staged, userImageEntryFiles, { image: digest }).seal();
    await mkdir(cacheDir('user-images'), { recursive: true });
    try {
      await rename(staged, dir);
    } catch (e) {
      // Another process read the same image first: use its entry.
      if (!['ENOTEMPTY', 'EEXIST'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
    }
  });
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  // Cached by content: the same image may have been read first under another name.
  manifest.recipe = `image:${path}`;
  return { path, manifest, recipeHash: `image-${key}`, digest, source: 'image', caseDisk: 'qcow2' };
}

/** One entry of `debugfs ls -p`: "/ino/mode/uid/gid/name/size/" (size empty for directories). */
export interface ListedEntry {
  ino: number;
  mode: number;
  name: string;
  size: number;
}

/** Parse `ls -p` output; names cannot hold "/", so the fields split cleanly (a name with a newline cannot be listed and is refused by the caller). */
export function parseLsP(text: string): { entries: ListedEntry[]; bad: string[] } {
  const entries: ListedEntry[] = [];
  const bad: string[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split('/');
    if (f.length !== 8 || f[0] !== '' || f[7] !== '' || !/^\d+$/.test(f[1]!) || !/^[0-7]+$/.test(f[2]!)) {
      bad.push(line);
      continue;
    }
    const name = f[5]!;
    if (name === '.' || name === '..') continue;
    entries.push({ ino: Number(f[1]), mode: parseInt(f[2]!, 8), name, size: Number(f[6] || 0) });
  }
  return { entries, bad };
}

const S_IFMT = 0o170000;
const typeOfMode = (mode: number): ManifestEntry['type'] | undefined =>
  (({ [0o040000]: 'dir', [0o100000]: 'file', [0o120000]: 'symlink' }) as Record<number, ManifestEntry['type']>)[mode & S_IFMT];

/**
 * Every file, directory and symlink of the image with its size, sha256,
 * inode, mapping and block map: the tree walked one level at a time (one
 * debugfs run lists every directory of a level), then read in batches
 * (readEntryState). Device nodes, fifos and sockets are left out: there is
 * nothing of theirs to migrate.
 */
export async function readImageManifest(path: string, sb: ImageSuperblock, key: string): Promise<Manifest> {
  const listed: Array<{ path: string; type: ManifestEntry['type'] }> = [{ path: '/', type: 'dir' }];
  const sizes = new Map<string, number>();
  let level = ['/'];
  while (level.length) {
    const outs = await debugfsBatch(
      path,
      level.map((d) => `ls -p ${addressable(d)}`),
    );
    const next: string[] = [];
    for (const [i, dir] of level.entries()) {
      const { entries, bad } = parseLsP(outs[i]!);
      if (bad.length) {
        throw new UserImageError(
          `debugfs lists ${dir} in a form qcrash cannot read (${JSON.stringify(bad[0]!.slice(0, 120))}): a name with a newline in it? Rename it (or remove it from the copy you test) and run again`,
        );
      }
      for (const e of entries) {
        const p = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
        if (p.includes('\uFFFD'))
          throw new UserImageError(
            `a name in ${dir} is not valid UTF-8 (${JSON.stringify(p)}): qcrash names files by UTF-8 paths; rename it in the copy you test`,
          );
        addressable(p);
        const type = typeOfMode(e.mode);
        if (!type) continue;
        listed.push({ path: p, type });
        if (type === 'file') sizes.set(p, e.size);
        if (type === 'dir') next.push(p);
      }
    }
    level = next;
  }
  const states = await readEntryState(
    path,
    listed.map((e) => e.path),
    undefined,
    { sizes },
  );
  const entries: ManifestEntry[] = states.map((s, i) => {
    if (!s.exists || !s.stat) throw new InfraError(`${path}: debugfs listed ${s.path} but cannot stat it`);
    return manifestEntry({ ...s, stat: s.stat }, listed[i]!.type);
  });
  return { recipe: `image:${path}`, recipeHash: key, blockSize: sb.blockSize, features: sb.features, entries };
}

/** The path as a debugfs argument, or the user told which file stands in the way. */
function addressable(p: string): string {
  try {
    return debugfsPath(p);
  } catch (e) {
    if (e instanceof UnaddressablePathError)
      throw new UserImageError(
        `the image holds ${JSON.stringify(p)}, a name with a newline, which debugfs cannot be given: rename it (or remove it from the copy you test) and run again`,
      );
    throw e;
  }
}

/** Entries the built-in set migrates: block-mapped files and directories (an empty one too: it has no extent flag yet). */
export function blockMapped(manifest: Manifest): ManifestEntry[] {
  return manifest.entries.filter(
    (e) => (e.type === 'file' || e.type === 'dir') && (e.mapping === 'blocks' || e.mapping === 'none'),
  );
}

/** A file's bytes as the image holds them and the byte ranges its blocks hold (the rest are holes). */
export interface ImageFile {
  bytes: Buffer;
  data: Array<[number, number]>;
}

/**
 * The original bytes of files of a user's image that a workload writes into:
 * read from the image (never written), with their data ranges from the
 * manifest's block maps, for the content oracle to hold each file's history to.
 */
export async function imageFileOrigins(base: BaseImage, paths: string[]): Promise<Map<string, ImageFile>> {
  const B = base.manifest.blockSize;
  const entries = new Map(base.manifest.entries.map((e) => [e.path, e]));
  const files = paths.filter((p) => entries.get(p)?.type === 'file');
  const states = await readEntryState(base.path, files, undefined, { keepBytes: new Set(files) });
  const out = new Map<string, ImageFile>();
  for (const s of states) {
    const e = entries.get(s.path)!;
    if (!s.bytes || s.sha256 !== e.sha256)
      throw new InfraError(
        `${base.path}: ${s.path} does not read back as its manifest recorded it (sha256 ${s.sha256 ?? 'unreadable'}, manifest ${e.sha256}): the image changed during the run`,
      );
    const data = (e.blockMap?.data ?? [])
      .map(([l, , n]) => [l * B, Math.min((l + n) * B, e.size)] as [number, number])
      .filter(([a, b]) => b > a);
    out.set(s.path, { bytes: s.bytes, data });
  }
  return out;
}
