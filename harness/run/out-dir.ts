import { access, mkdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
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
    await mkdir(dir, { recursive: true });
    const probe = join(dir, `.qcrash-probe-${process.pid}`);
    await writeFile(probe, 'ok');
    await rm(probe, { force: true });
  } catch (e) {
    throw new ConfigError(
      `--out ${dir} cannot be written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): choose a folder you can write`,
    );
  }
}

/** Bytes free to an unprivileged writer in `dir`. */
export async function freeBytes(dir: string): Promise<number> {
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

/** The folder of a new run: no run in it yet (that one is finished with --resume), and usable (checkOutDir). */
export async function checkNewRunDir(dir: string): Promise<void> {
  if (await exists(join(dir, 'run.json'))) {
    throw new ConfigError(`--out ${dir} already holds a run: finish it with --resume ${dir}, or choose another --out`);
  }
  await checkOutDir(dir);
}
