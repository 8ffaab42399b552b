import { readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { onCleanup } from './cleanup.ts';
import { cacheRoot } from './paths.ts';

/**
 * A cache file written under a temporary name beside its final one,
 * `<final>.<pid>.partial`, and renamed into place only when complete. Removed
 * when the write fails and on Ctrl-C/SIGTERM (onCleanup); a SIGKILLed
 * process cannot remove it, so the next run does (`sweepStalePartials`),
 * recognising it by the dead pid in its name.
 */
export class PartialFile {
  readonly path: string;
  private readonly unregister: () => void;
  private settled = false;

  constructor(readonly final: string) {
    this.path = `${final}.${process.pid}.partial`;
    this.unregister = onCleanup(() => rm(this.path, { force: true }));
  }

  /** Rename into place: readers see the whole file or none. */
  async commit(): Promise<void> {
    await rename(this.path, this.final);
    this.settle();
  }

  async discard(): Promise<void> {
    this.settle();
    await rm(this.path, { force: true });
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    this.unregister();
  }
}

/** Cache folders whose entries may be written through partial names (kernel-work, ccache and bisect are git's and make's). */
const sweptFolders = ['images', 'snapshots', 'initramfs', 'kernels', 'symbols'];

/** `<name>.<pid>.partial` (PartialFile) and `<kernel id>.tmp-<pid>` (a kernel build's output folder before its rename). */
const partialName = /\.(\d+)\.partial$|\.tmp-(\d+)$/;

/** The pid a partial name carries, or undefined when the name is not a partial's. */
export function partialOwner(name: string): number | undefined {
  const m = partialName.exec(name);
  const pid = Number(m?.[1] ?? m?.[2]);
  return m && Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface StalePartial {
  path: string;
  pid: number;
  /** Bytes on disk (allocated blocks). */
  bytes: number;
}

/** Partial files and folders in the cache whose writer is gone (two levels deep: `snapshots/x`, `initramfs/<hash>/x`). */
export async function findStalePartials(root = cacheRoot()): Promise<StalePartial[]> {
  const found: StalePartial[] = [];
  const visit = async (dir: string, depth: number) => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(dir, n);
      const pid = partialOwner(n);
      if (pid !== undefined) {
        if (!processAlive(pid)) found.push({ path: p, pid, bytes: await diskUsage(p) });
      } else if (
        depth > 0 &&
        (await stat(p).then(
          (s) => s.isDirectory(),
          () => false,
        ))
      )
        await visit(p, depth - 1);
    }
  };
  for (const f of sweptFolders) await visit(join(root, f), 1);
  return found;
}

/** Remove what interrupted writers left in the cache. Returns what was removed. */
export async function sweepStalePartials(root = cacheRoot()): Promise<StalePartial[]> {
  const stale = await findStalePartials(root);
  for (const s of stale) await rm(s.path, { recursive: true, force: true });
  return stale;
}

/** Bytes a file or folder takes on disk (allocated blocks, so a sparse image counts what it really uses). */
export async function diskUsage(path: string): Promise<number> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.blocks * 512;
  let total = st.blocks * 512;
  for (const n of await readdir(path).catch(() => [] as string[])) total += await diskUsage(join(path, n));
  return total;
}
