import { mkdtemp, rm, readdir, readFile, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onCleanup, shuttingDown } from './cleanup.ts';
import { sweepStalePartials } from './partial-file.ts';
import { cacheNotice } from './cache-entry.ts';

const PREFIX = 'qcrash-';
const OWNER_FILE = 'owner.pid';

/**
 * A private (0700) temp directory owned by this process, removed on dispose,
 * on signals, and, if this process is SIGKILLed, by the next qcrash run
 * (`sweepStaleTempDirs`), which also kills any QEMU whose pidfile lies inside.
 */
export class TempDir implements AsyncDisposable {
  private unregister: () => void;
  private constructor(readonly path: string) {
    this.unregister = onCleanup(() => this.remove());
  }

  static async create(label = 'tmp'): Promise<TempDir> {
    const base = process.env.QCRASH_TMPDIR || tmpdir();
    const path = await mkdtemp(join(base, `${PREFIX}${label}-`));
    // The teardown may have run its cleanups while mkdtemp ran: this one would outlive it.
    if (shuttingDown()) {
      await rm(path, { recursive: true, force: true });
      throw new Error('qcrash is stopping: no new temp dir');
    }
    await chmod(path, 0o700);
    await writeFile(join(path, OWNER_FILE), `${process.pid}\n`);
    return new TempDir(path);
  }

  join(...parts: string[]): string {
    return join(this.path, ...parts);
  }

  async remove(): Promise<void> {
    this.unregister();
    await killPidfilesIn(this.path);
    await rm(this.path, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.remove();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kill processes whose pidfiles (QEMU's -pidfile) lie in dir; only if their cmdline mentions dir. */
async function killPidfilesIn(dir: string): Promise<void> {
  let names: string[];
  try {
    names = (await readdir(dir, { recursive: true })) as string[];
  } catch {
    return;
  }
  for (const n of names.filter((x) => x.endsWith('.pid') && !x.endsWith(OWNER_FILE))) {
    const pid = Number((await readFile(join(dir, n), 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) continue;
    // Guard against pid reuse: only kill a process that refers to our dir.
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
}

/**
 * Remove temp dirs left by qcrash processes that no longer exist, and the
 * cache's partial files whose writer is gone (a SIGKILL while a VM state was
 * being saved leaves up to 59 MB). Returns what was removed.
 */
export async function sweepStaleTempDirs(): Promise<string[]> {
  const base = process.env.QCRASH_TMPDIR || tmpdir();
  const partials = await sweepStalePartials();
  if (partials.length) {
    const mb = partials.reduce((n, p) => n + p.bytes, 0) / 2 ** 20;
    cacheNotice(
      `removed ${partials.length} partial file(s) left by interrupted qcrash processes (${mb.toFixed(1)} MiB): ${partials.map((p) => p.path).join(', ')}`,
    );
  }
  const removed: string[] = partials.map((p) => p.path);
  let entries: string[];
  try {
    entries = await readdir(base);
  } catch {
    return removed;
  }
  for (const e of entries.filter((x) => x.startsWith(PREFIX))) {
    const dir = join(base, e);
    const owner = Number((await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(owner) || owner <= 0 || alive(owner)) continue;
    await killPidfilesIn(dir);
    await rm(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}
