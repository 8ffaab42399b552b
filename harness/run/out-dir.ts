import { access, constants, mkdir, open, rm, stat, statfs } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { ConfigError } from '../util/errors.ts';

/**
 * Filesystems that look like folders but hold no files of ours: results
 * written there vanish or fail in odd ways (a mkdir under /proc spun at
 * 90% CPU). Magic numbers from linux/magic.h.
 */
const pseudoFilesystems: Record<number, string> = {
  0x9fa0: 'proc',
  0x62656572: 'sysfs',
  0x64626720: 'debugfs',
  0x74726163: 'tracefs',
  0x27e0eb: 'cgroup',
  0x63677270: 'cgroup2',
  0x73636673: 'securityfs',
  0x6165676c: 'pstore',
  0x1cd1: 'devpts',
  0x62656570: 'configfs',
  0xcafe4a11: 'bpf',
  0xde5e81e4: 'efivarfs',
};

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/**
 * Check a results folder before anything is prepared: not a file, not on
 * a pseudo filesystem, creatable and writable. Bad ones are exit 2 with
 * what to do, not a hang or a stack trace an hour later.
 */
export async function checkOutDir(dir: string): Promise<void> {
  let nearest = dir;
  while (!(await exists(nearest)) && dirname(nearest) !== nearest) nearest = dirname(nearest);
  const fs = await statfs(nearest).catch(() => undefined);
  const pseudo = fs ? pseudoFilesystems[Number(fs.type)] : undefined;
  if (pseudo)
    throw new ConfigError(
      `--out ${dir} is on ${pseudo}, not a real filesystem: choose a folder on a disk (default: results/<run-id>)`,
    );
  const st = await stat(dir).catch(() => undefined);
  if (st && !st.isDirectory()) throw new ConfigError(`--out ${dir} is a file, not a folder: choose another --out`);
  try {
    await mkdirEach(dir);
    await probeWrite(dir);
  } catch (e) {
    throw new ConfigError(`--out ${dir} cannot be written (${fsCause(e)}): choose a folder you can write`);
  }
}

/** The real cause with the path: "EROFS: read-only file system, mkdir '/mnt/ro/out'". */
function fsCause(e: unknown): string {
  return (e as Error).message ?? String(e);
}

/**
 * mkdir -p one level at a time: a recursive mkdir on a read-only filesystem
 * reports ENOENT (node retries the parent), a single one the real EROFS.
 */
async function mkdirEach(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let d = dir; !(await exists(d)) && dirname(d) !== d; d = dirname(d)) missing.unshift(d);
  for (const d of missing) {
    await mkdir(d).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
}

/**
 * Create and remove a probe file. O_EXCL|O_NOFOLLOW under a fresh random
 * name: a file or symlink someone planted in a shared folder is never
 * opened, so never written through (as root it would be).
 */
async function probeWrite(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const probe = join(dir, `.qcrash-probe-${process.pid}-${randomBytes(6).toString('hex')}`);
    let fh;
    try {
      fh = await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 3) continue;
      throw e;
    }
    try {
      await fh.writeFile('ok');
    } finally {
      await fh.close();
      await rm(probe, { force: true });
    }
    return;
  }
}

/** Bytes free to an unprivileged writer in `dir`. */
async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return Number(fs.bavail) * Number(fs.bsize);
}

/**
 * Refuse a run the results folder cannot hold: each case disk takes the base
 * image's allocated size while its case is in flight (`inFlight` at once),
 * a run that keeps images keeps one compressed copy of the base and what
 * each kept case changed (4-200 KiB for the default suite: counted as 1
 * MiB), and every case writes about a MiB of logs.
 */
export async function checkOutSpace(
  dir: string,
  o: { cases: number; inFlight: number; keep: 'all' | 'failed' | 'none'; imageBytes: number },
): Promise<void> {
  const logs = 1 << 20;
  const delta = Math.min(o.imageBytes, 1 << 20);
  const kept = o.keep === 'none' ? 0 : o.imageBytes + (o.keep === 'all' ? o.cases * delta : 0);
  const need = kept + Math.min(o.inFlight, o.cases) * o.imageBytes + o.cases * logs;
  const free = await freeBytes(dir);
  if (free < need) {
    const mib = (b: number) => `${Math.ceil(b / (1 << 20))} MiB`;
    throw new ConfigError(
      `--out ${dir} has ${mib(free)} free; this run needs about ${mib(need)} (${o.cases} case(s), --keep ${o.keep}, about ${mib(o.imageBytes)} a crash image): free space, keep fewer crash images (--keep failed or none), or choose another --out`,
    );
  }
}

/** The folder of a new run (checked by checkOutDir, and locked): no run in it yet (that one is finished with --resume). */
export async function checkNewRunDir(dir: string): Promise<void> {
  if (await exists(join(dir, 'run.json'))) {
    throw new ConfigError(`--out ${dir} already holds a run: finish it with --resume ${dir}, or choose another --out`);
  }
}
