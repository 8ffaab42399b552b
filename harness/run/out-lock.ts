import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../util/errors.ts';
import { onCleanup, removedIfInterrupted } from '../util/cleanup.ts';
import { processAlive } from '../util/partial-file.ts';

/** The lock file in a results folder while a run writes it. */
export const outLockFile = '.qcrash-lock';

interface LockOwner {
  pid: number;
  host: string;
  startedAt: string;
}

async function readOwner(file: string): Promise<LockOwner | undefined> {
  try {
    const o = JSON.parse(await readFile(file, 'utf8')) as Partial<LockOwner>;
    return Number.isInteger(o.pid) && typeof o.host === 'string'
      ? { pid: o.pid!, host: o.host, startedAt: String(o.startedAt ?? '') }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A results folder held by one run for its whole life: `.qcrash-lock`,
 * created with O_EXCL, holds the owner's pid and host. Two runs writing one
 * folder would mix their cases and reports; the second is refused at once
 * (exit 2). A lock whose owner is dead (same host, no such pid: the run was
 * SIGKILLed or the machine rebooted) is stale: `--resume` takes it over, a
 * new run is refused with what to do. A lock from another host cannot be
 * checked and counts as held. Removed when the run ends, and on Ctrl-C.
 */
export class OutDirLock implements AsyncDisposable {
  private constructor(
    private readonly file: string,
    private readonly unregister: () => void,
  ) {}

  static async acquire(dir: string, opts: { resume: boolean }): Promise<OutDirLock> {
    const file = join(dir, outLockFile);
    if (await takeLock(file)) return OutDirLock.held(file);
    const owner = await readOwner(file);
    if (!owner) {
      // Created this instant by another run that has not written its pid yet, or left empty by one killed in between.
      const age = Date.now() - ((await stat(file).catch(() => undefined))?.mtimeMs ?? Date.now());
      if (age < 10_000) throw inUse(dir, 'another qcrash run (starting)');
      throw new ConfigError(
        `--out ${dir} has a lock file without an owner (${file}): a run was killed while taking it; if no qcrash runs there, remove ${file} and run again`,
      );
    }
    if (owner.host !== hostname() || processAlive(owner.pid))
      throw inUse(
        dir,
        `qcrash pid ${owner.pid} on ${owner.host}${owner.startedAt ? ` (since ${owner.startedAt})` : ''}`,
        owner.host !== hostname() ? file : undefined,
      );
    if (!opts.resume) {
      throw new ConfigError(
        `--out ${dir} has a stale lock: qcrash pid ${owner.pid} started a run there at ${owner.startedAt} and is no longer running (killed?). Finish that run with: qcrash run --resume ${dir} (which takes the lock over), or remove ${file} if the folder holds nothing of value, or choose another --out`,
      );
    }
    if (!(await takeOver(file, owner)) || !(await takeLock(file)))
      throw inUse(dir, 'another qcrash run that took the stale lock over first');
    process.stderr.write(`qcrash: took over the stale lock of ${dir} (pid ${owner.pid} is no longer running)\n`);
    return OutDirLock.held(file);
  }

  private static held(file: string): OutDirLock {
    const unregister = onCleanup(() => rm(file, { force: true }));
    return new OutDirLock(file, unregister);
  }

  async release(): Promise<void> {
    this.unregister();
    await rm(this.file, { force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

/** tryCreate, and a lock made while a Ctrl-C's teardown ran is removed by it (else the next run in the folder refuses it as stale). */
function takeLock(file: string): Promise<boolean> {
  return removedIfInterrupted(tryCreate(file), async (created) => created && rm(file, { force: true }));
}

/** O_EXCL: exactly one process creates the file; false when it exists. */
async function tryCreate(file: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(file, 'wx', 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new ConfigError(
      `cannot lock the results folder (${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): choose a folder you can write`,
    );
  }
  try {
    await fh.writeFile(
      JSON.stringify({ pid: process.pid, host: hostname(), startedAt: new Date().toISOString() } satisfies LockOwner) + '\n',
    );
  } finally {
    await fh.close();
  }
  return true;
}

/**
 * Move the stale lock aside, then make sure what was moved is the stale one:
 * two resumes racing for it must not remove the lock the winner just made.
 */
async function takeOver(file: string, stale: LockOwner): Promise<boolean> {
  const aside = `${file}.stale-${process.pid}`;
  try {
    await rename(file, aside);
  } catch {
    return false;
  }
  const moved = await readOwner(aside);
  if (moved?.pid !== stale.pid || moved.host !== stale.host) {
    await rename(aside, file).catch(() => {});
    return false;
  }
  await rm(aside, { force: true });
  return true;
}

function inUse(dir: string, by: string, foreignLock?: string): ConfigError {
  return new ConfigError(
    `--out ${dir} is in use by ${by}: two runs in one folder would mix their results; wait for it to finish, or choose another --out${foreignLock ? ` (if that run is gone, remove ${foreignLock})` : ''}`,
  );
}
