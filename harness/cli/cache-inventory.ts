import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir, cacheRoot } from '../util/paths.ts';
import { CacheEntry, type EntryCheck } from '../util/cache-entry.ts';
import { diskUsage, partialOwner, processAlive } from '../util/partial-file.ts';
import { imageEntryFiles } from '../image/build.ts';
import { userImageEntryFiles } from '../image/user-image.ts';
import { builtKernelEntry } from '../kernel/build.ts';

/**
 * What `~/.cache/qcrash` holds, by kind. Sealed kinds are verified by
 * content (cache-entry.ts); the others (kernel build trees, ccache, bisect
 * clones, KVM probe results) can only be removed.
 */
export const sealedKinds = ['images', 'user-images', 'snapshots', 'initramfs', 'kernels', 'symbols'] as const;
export const otherKinds = ['kernel-work', 'ccache', 'bisect', 'accel'] as const;
export type SealedKind = (typeof sealedKinds)[number];
export type CacheKind = SealedKind | (typeof otherKinds)[number];

const SEAL_SUFFIX = '.checksums.json';

/** One thing in the cache: a sealed entry, a partial file, or a whole unsealed folder. */
export type CacheItem =
  | { what: 'entry'; kind: SealedKind; path: string; entry: CacheEntry }
  | { what: 'partial'; kind: SealedKind; path: string; pid: number; stale: boolean }
  | { what: 'folder'; kind: CacheKind; path: string };

async function names(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** The entries of one sealed kind, partial files included. Temp files of atomic writes (`.x.tmp`) are not listed. */
export async function listSealed(kind: SealedKind): Promise<CacheItem[]> {
  const dir = cacheDir(kind);
  const items: CacheItem[] = [];
  const partial = (path: string, pid: number): CacheItem => ({ what: 'partial', kind, path, pid, stale: !processAlive(pid) });
  const all = await names(dir);
  const present = new Set(all);
  for (const n of all) {
    const p = join(dir, n);
    const pid = partialOwner(n);
    if (pid !== undefined) {
      items.push(partial(p, pid));
      continue;
    }
    if (n.startsWith('.')) continue;
    switch (kind) {
      case 'images':
        if (await isDir(p))
          items.push({ what: 'entry', kind, path: p, entry: CacheEntry.folder('base image', p, imageEntryFiles) });
        break;
      case 'user-images':
        // What qcrash read from a user's image (its manifest), never the image itself.
        if (await isDir(p))
          items.push({ what: 'entry', kind, path: p, entry: CacheEntry.folder('user image manifest', p, userImageEntryFiles) });
        break;
      case 'initramfs':
        if (await isDir(p)) {
          items.push({ what: 'entry', kind, path: p, entry: CacheEntry.folder('initramfs', p, ['initramfs.cpio']) });
          for (const m of await names(p)) {
            const q = partialOwner(m);
            if (q !== undefined) items.push(partial(join(p, m), q));
          }
        }
        break;
      case 'kernels':
        if (await isDir(p)) items.push({ what: 'entry', kind, path: p, entry: builtKernelEntry(p) });
        break;
      case 'snapshots':
      case 'symbols': {
        // A seal whose data is gone still names an entry (a missing one); the data file names it otherwise.
        const data = n.endsWith(SEAL_SUFFIX) ? n.slice(0, -SEAL_SUFFIX.length) : n;
        const want = kind === 'snapshots' ? '.state' : '.kallsyms';
        if (!data.endsWith(want)) break;
        if (data !== n && present.has(data)) break;
        items.push({
          what: 'entry',
          kind,
          path: join(dir, data),
          entry: CacheEntry.file(kind === 'snapshots' ? 'saved VM state' : 'kernel symbol table', join(dir, data)),
        });
        break;
      }
    }
  }
  return items;
}

export async function listKind(kind: CacheKind): Promise<CacheItem[]> {
  if ((sealedKinds as readonly string[]).includes(kind)) return listSealed(kind as SealedKind);
  const p = cacheDir(kind);
  return (await isDir(p)) ? [{ what: 'folder', kind, path: p }] : [];
}

export interface Verdict {
  item: CacheItem;
  ok: boolean;
  /** Why an item is bad, or what a partial file is. */
  reason?: string;
}

/** Check an item: an entry by its seal; a partial is bad when its writer is gone, and not judged while it writes. */
export async function verifyItem(item: CacheItem): Promise<Verdict> {
  if (item.what === 'partial') {
    return item.stale
      ? { item, ok: false, reason: `left by an interrupted save (pid ${item.pid} is gone)` }
      : { item, ok: true, reason: `being written by pid ${item.pid}` };
  }
  if (item.what === 'folder') return { item, ok: true };
  const c: EntryCheck = await item.entry.check();
  if (c.state === 'ok') return { item, ok: true };
  return { item, ok: false, reason: c.state === 'bad' ? c.reason : 'missing' };
}

/** Bytes an item takes on disk: an entry with its seal. */
export async function itemBytes(item: CacheItem): Promise<number> {
  if (item.what === 'entry' && item.entry.sealPath !== join(item.path, 'checksums.json')) {
    return (await diskUsage(item.path)) + (await diskUsage(item.entry.sealPath));
  }
  return diskUsage(item.path);
}

/** Remove an item; a partial file still being written is left alone (its writer would fail). Returns the bytes freed. */
export async function removeItem(item: CacheItem): Promise<number> {
  if (item.what === 'partial' && !item.stale) return 0;
  const bytes = await itemBytes(item);
  if (item.what === 'entry') await item.entry.discard();
  else await rm(item.path, { recursive: true, force: true });
  return bytes;
}

export function cacheLabel(path: string): string {
  const root = cacheRoot();
  return path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 2 ** 30) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}
