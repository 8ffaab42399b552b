import { access, mkdir, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, normalize, relative } from 'node:path';
import type { BaseImage } from '../image/build.ts';
import { copyImage } from '../image/disk.ts';
import { contentDigest } from '../util/cache-entry.ts';
import { ConfigError, InfraError } from '../util/errors.ts';
import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';

/** A kept crash image in its case folder: a qcow2 holding what the crash changed, over the run's copy of the base. */
export const keptImageName = 'crash.qcow2';
/** The raw crash image: the case's disk while it runs, and what `qcrash image export` gives back. */
export const rawImageName = 'crash.img';
/** Where a run keeps one compressed copy of each base image its kept crash images lie over. */
export const runImagesDir = 'images';

/**
 * qcow2 clusters of one 4 KiB block: a crash changes a few scattered blocks
 * (the superblock, bitmaps, inode table blocks, journal blocks), and each
 * changed block costs one cluster.
 */
const deltaClusterBytes = 4096;

/**
 * Kept crash images, stored to fit a nightly disk. A crash image is the
 * base image (recipe files of random bytes, 7-25 MB allocated for the
 * default suite's recipes, which no compressor shrinks) plus the few blocks
 * the workload and the crash changed (4-200 KiB here). So a run keeps each
 * base it used once, compressed (`images/<recipe>-<digest>.qcow2`, qemu-img
 * convert -c), and each kept case only its changed blocks, as a qcow2 whose
 * backing file is that copy by a relative path (`crash.qcow2`: qemu-img
 * rebase against the base writes exactly the clusters that differ). Nothing
 * points into the cache, which may be cleaned or rebuilt with new UUIDs; the
 * run folder (or a merge that carries its `images/` with its `cases/`) is
 * valid on any machine with qemu-img, and `qcrash image export CASE_DIR`
 * (exportCrashImage) gives the raw image back. QEMU boots on a crash.qcow2
 * as it is.
 */
export class CrashImageStore {
  /** One copy per base digest, made once even when cases finish together. */
  private readonly bases = new Map<string, Promise<string>>();

  constructor(readonly runDir: string) {}

  /**
   * Keep the raw crash image `raw` (in `caseDir`) as `caseDir/crash.qcow2`
   * and remove the raw file. Returns the kept file and its size on disk.
   */
  async keep(raw: string, base: BaseImage, caseDir: string): Promise<{ file: string; bytes: number }> {
    const stored = await this.storedBase(base);
    const qemuImg = await tool('qemu-img');
    const dest = join(caseDir, keptImageName);
    const partial = join(caseDir, `.${keptImageName}.partial`);
    await rm(partial, { force: true });
    try {
      // An overlay over the crash image itself, then a safe rebase onto the
      // base: qemu-img compares the two and copies into the overlay exactly
      // the clusters where they differ. The raw base in the cache is what is
      // compared (no decompression); the stored copy has the same bytes, and
      // an unsafe rebase then names it instead, relative to the case folder.
      await runOk(qemuImg, ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${deltaClusterBytes}`, '-b', raw, '-F', 'raw', partial]);
      await runOk(qemuImg, ['rebase', '-q', '-f', 'qcow2', '-b', base.path, '-F', 'raw', partial]);
      await runOk(qemuImg, ['rebase', '-q', '-u', '-f', 'qcow2', '-b', relative(caseDir, stored), '-F', 'qcow2', partial]);
      await rename(partial, dest);
    } catch (e) {
      await rm(partial, { force: true });
      throw new InfraError(`could not store the crash image ${raw} compressed: ${(e as Error).message}`, { cause: e });
    }
    await rm(raw, { force: true });
    return { file: dest, bytes: (await stat(dest)).blocks * 512 };
  }

  /** The run's compressed copy of `base`, made on first use. */
  private storedBase(base: BaseImage): Promise<string> {
    const key = base.path;
    let p = this.bases.get(key);
    if (!p) {
      p = this.copyBase(base);
      // A failed copy is tried again by the next case, not remembered.
      p.catch(() => this.bases.delete(key));
      this.bases.set(key, p);
    }
    return p;
  }

  private async copyBase(base: BaseImage): Promise<string> {
    // Named by content: bases built on two machines (mkfs picks new UUIDs)
    // are two files, so shards merge without overwriting each other's.
    const digest = (base.digest ?? (await contentDigest(base.path))).replace(/^sha256:/, '').slice(0, 16);
    const recipe = basename(dirname(base.path)).replace(/-[0-9a-f]{16}$/, '');
    const dir = join(this.runDir, runImagesDir);
    const dest = join(dir, `${recipe}-${digest}.qcow2`);
    if (await exists(dest)) return dest;
    await mkdir(dir, { recursive: true });
    const partial = `${dest}.${process.pid}.partial`;
    try {
      await runOk(await tool('qemu-img'), ['convert', '-q', '-c', '-O', 'qcow2', '-f', 'raw', base.path, partial]);
      await rename(partial, dest);
    } finally {
      await rm(partial, { force: true });
    }
    return dest;
  }
}

/**
 * The raw crash image of a case folder, written to `dest` (default: the
 * case folder's `crash.img`, where a run used to leave it), sparse. A case
 * whose raw image is still there (a run that kept raw images) is copied.
 * Refuses a folder without a kept image, and says why a stored one cannot
 * be read (its run's `images/` folder missing, e.g. after copying only the
 * case folder).
 */
export async function exportCrashImage(caseDir: string, dest = join(caseDir, rawImageName), opts: { force?: boolean } = {}): Promise<string> {
  const kept = join(caseDir, keptImageName);
  const raw = join(caseDir, rawImageName);
  if (!(await exists(kept))) {
    if (await exists(raw)) {
      if (dest !== raw) {
        await refuseOverwrite(caseDir, dest, opts.force);
        await copyImage(raw, dest);
      }
      return dest;
    }
    throw new ConfigError(`${caseDir} holds no crash image (${keptImageName} or ${rawImageName}): the run kept none for this case (see --keep), or this is not a case folder`);
  }
  const qemuImg = await tool('qemu-img');
  const info = await runOk(qemuImg, ['info', '--output=json', kept]).catch((e: Error) => {
    throw new InfraError(`cannot read ${kept}: ${e.message}`);
  });
  const backing = (JSON.parse(info.stdout) as { 'full-backing-filename'?: string })['full-backing-filename'];
  if (backing && !(await exists(backing))) {
    throw new ConfigError(`${kept} lies over ${backing}, which is missing: copy the run's ${runImagesDir}/ folder along with its cases/ (a case folder alone holds only what the crash changed)`);
  }
  await refuseOverwrite(caseDir, dest, opts.force, backing);
  const partial = `${dest}.${process.pid}.partial`;
  try {
    // qemu-img writes a raw target sparse (zeroes stay holes).
    await runOk(qemuImg, ['convert', '-q', '-O', 'raw', kept, partial]);
    await rename(partial, dest);
  } finally {
    await rm(partial, { force: true });
  }
  return dest;
}

/**
 * An existing `dest` is replaced only with `force`, and never when it is a
 * file the run depends on: a kept crash image, or a base image in the run's
 * images/ folder (every kept case of that base lies over it).
 */
async function refuseOverwrite(caseDir: string, dest: string, force = false, backing?: string): Promise<void> {
  const target = await realpath(dest).catch(() => undefined);
  if (!target) return;
  const runDir = await findRunDir(caseDir);
  const depended = [join(caseDir, keptImageName), ...(backing ? [backing] : []), ...(runDir ? await runImageFiles(runDir) : [])];
  for (const f of depended) {
    if ((await realpath(f).catch(() => undefined)) === target) {
      throw new ConfigError(`--out ${dest} is ${normalize(f)}, which the run's kept crash images depend on: never overwritten; choose another --out`);
    }
  }
  if (!force) throw new ConfigError(`--out ${dest} exists: give --force to overwrite it, or choose another --out`);
}

/** The run folder a case folder lies in (the nearest parent with run.json). */
async function findRunDir(caseDir: string): Promise<string | undefined> {
  for (let d = dirname(caseDir); dirname(d) !== d; d = dirname(d)) {
    if (await exists(join(d, 'run.json'))) return d;
  }
  return undefined;
}

/** The run's stored base images and every kept crash image of its cases. */
async function runImageFiles(runDir: string): Promise<string[]> {
  const bases = (await readdir(join(runDir, runImagesDir)).catch(() => [] as string[])).map((f) => join(runDir, runImagesDir, f));
  const cases = await readdir(join(runDir, 'cases'), { recursive: true }).catch((): string[] => []);
  return [...bases, ...cases.filter((f) => basename(f) === keptImageName).map((f) => join(runDir, 'cases', f))];
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}
