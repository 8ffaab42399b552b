import { access, mkdtemp, rm, readdir, readFile, statfs, chmod, lstat } from 'node:fs/promises';
import { constants, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onCleanup, removedIfInterrupted, shuttingDown } from './cleanup.ts';
import { processAlive, sweepStalePartials } from './partial-file.ts';
import { cacheNotice } from './cache-entry.ts';

const PREFIX = 'qcrash-';
/** Written by qcrash versions that named the owner in a file, not in the name; still read by the sweep. */
const OWNER_FILE = 'owner.pid';
/** `qcrash-<label>-p<pid>-<mkdtemp's 6 characters>`: the owner is in the name from the moment the dir exists. */
const OWNED_NAME = /-p(\d+)-[A-Za-z0-9]{6}$/;
/** A qcrash dir that names no owner (in its name or a file) is removed once older than this. */
export const ownerlessGraceMs = 60_000;

/**
 * A private (0700) temp directory owned by this process, removed on dispose,
 * on signals, and, if this process is SIGKILLed, by the next qcrash run
 * (`sweepStaleTempDirs`), which also kills any QEMU whose pidfile lies inside.
 * The owner's pid is part of the name mkdtemp creates atomically: no window
 * in which the dir exists without an owner.
 */
export class TempDir implements AsyncDisposable {
  private unregister: () => void;
  private constructor(
    readonly path: string,
    /** On /dev/shm (created with `inMemory` and there was room). */
    readonly inMemory = false,
  ) {
    this.unregister = onCleanup(() => this.remove());
    liveDirs.add(path);
  }

  /**
   * `inMemory`: on /dev/shm (tmpfs) when it has room for that many bytes
   * twice over and QCRASH_TMPDIR does not choose the place: for working
   * images rewritten many times a second (a write-log unit's, with e2fsck's
   * undo files), where a disk-backed folder costs e2fsck's journal replay
   * half again its time.
   */
  static async create(label = 'tmp', opts: { inMemory?: number } = {}): Promise<TempDir> {
    const inMemory = !process.env.QCRASH_TMPDIR && opts.inMemory !== undefined && (await roomIn(memoryDir, 2 * opts.inMemory));
    const base = process.env.QCRASH_TMPDIR || (inMemory ? memoryDir : tmpdir());
    if (shuttingDown()) throw new Error('qcrash is stopping: no new temp dir');
    const path = await removedIfInterrupted(mkdtemp(join(base, `${PREFIX}${label}-p${process.pid}-`)), (made) =>
      rm(made, { recursive: true, force: true }),
    );
    // A teardown that started meanwhile holds the removal (removedIfInterrupted).
    if (shuttingDown()) throw new Error('qcrash is stopping: no new temp dir');
    // Registered before the chmod's await, so no turn passes with the dir unowned.
    const dir = new TempDir(path, inMemory);
    await chmod(path, 0o700);
    return dir;
  }

  join(...parts: string[]): string {
    return join(this.path, ...parts);
  }

  async remove(): Promise<void> {
    this.unregister();
    await killPidfilesIn(this.path);
    await rm(this.path, { recursive: true, force: true });
    liveDirs.delete(this.path);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.remove();
  }
}

const memoryDir = '/dev/shm';

/**
 * Temp dirs of this process not removed yet. A process that ends without
 * removing them (process.exit() from a script using the library, the
 * teardown's hard deadline after a signal, an idle folder whose timer had
 * not fired) removes them on 'exit', synchronously, since nothing
 * asynchronous runs once 'exit' is emitted. QEMU processes in them end with
 * the harness (their parent-death signal).
 */
const liveDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of liveDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* exiting: nothing more to do */
    }
  }
});

/** The folder is writable and its filesystem has `bytes` free. */
async function roomIn(dir: string, bytes: number): Promise<boolean> {
  try {
    await access(dir, constants.W_OK);
    const s = await statfs(dir);
    return s.bavail * s.bsize >= bytes;
  } catch {
    return false;
  }
}

/** Kill processes whose pidfiles (QEMU's -pidfile) lie in dir; only if their cmdline mentions dir. */
async function killPidfilesIn(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir, { recursive: true });
  } catch {
    return;
  }
  for (const n of names.filter((x) => x.endsWith('.pid') && !x.endsWith(OWNER_FILE))) {
    const pid = Number((await readFile(join(dir, n), 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 1 || !processAlive(pid)) continue;
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
  // In-memory temp dirs (TempDir.create's inMemory) too: a killed run's working images would hold RAM until a reboot.
  for (const dir of new Set([base, ...(process.env.QCRASH_TMPDIR ? [] : [memoryDir])])) removed.push(...(await sweepIn(dir)));
  return removed;
}

async function sweepIn(base: string): Promise<string[]> {
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = await readdir(base);
  } catch {
    return removed;
  }
  for (const e of entries.filter((x) => x.startsWith(PREFIX))) {
    const dir = join(base, e);
    if (!(await isStale(dir))) continue;
    await killPidfilesIn(dir);
    await rm(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/** A qcrash temp dir whose owner is gone, or that names none and is older than `ownerlessGraceMs`. */
async function isStale(dir: string): Promise<boolean> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return false;
  const named = OWNED_NAME.exec(dir)?.[1];
  const owner = Number(named ?? (await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => '')).trim());
  if (Number.isInteger(owner) && owner > 0) return !processAlive(owner);
  // Left by an older qcrash between mkdtemp and its owner file, or by hand.
  return Date.now() - st.mtimeMs > ownerlessGraceMs;
}
