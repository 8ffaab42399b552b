import { mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { execa } from 'execa';
import { cacheDir } from '../util/paths.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import { compiledObject, dryRunCompiledObjects, type BuildEstimate } from './build-progress.ts';

/**
 * How many objects a kernel build will compile, before it starts:
 *  - the object dir holds an earlier build: the objects whose dependencies
 *    changed since (make's own rule, read from the .cmd files kbuild's
 *    fixdep writes), plus the objects every relink compiles again;
 *  - else an earlier build of the same .config from scratch, recorded here;
 *  - else `make -n` (the config's own object list), plus what a dry run
 *    cannot see.
 */

/**
 * What `make -n bzImage` cannot list in an empty object dir, measured on
 * linux-source-6.1 with kernels/configs/minimal.config: the real build
 * compiled 937 objects; the dry run listed 873 and really built objtool (22:
 * tools/ runs its own make without -n), which leaves 42: the boot image (39,
 * made from vmlinux, which a dry run never links) and the link stage (3:
 * init/version-timestamp.o and two kallsyms passes). They hardly depend on
 * the config, so a constant is fair for a first estimate; that build's real
 * count is recorded and used from then on.
 */
export const dryRunMisses = 42;

/**
 * Compile steps every relink repeats in 6.1, measured on a real incremental
 * build (fs/ext4/migrate.c changed: 8 compiled): init/version-timestamp.o,
 * two kallsyms passes, arch/x86/boot/version.o (the new utsversion.h),
 * compressed/misc.o and piggy.o of the new compressed image, and the setup
 * header with its new offsets. Replaced by what an incremental build of the
 * config really did once there is one.
 */
export const defaultRelinkObjects = 7;

export interface BuildStats {
  configHash: string;
  /** Objects compiled by a build that started from an empty object dir. */
  fullBuildObjects?: number;
  /** Objects an incremental build compiled beyond the ones whose sources changed. */
  relinkObjects?: number;
  updatedAt: string;
}

const statsFile = (configHash: string) => cacheDir('kernel-build-stats', `${configHash}.json`);

export async function readBuildStats(configHash: string): Promise<BuildStats | undefined> {
  try {
    return JSON.parse(await readFile(statsFile(configHash), 'utf8')) as BuildStats;
  } catch {
    return undefined;
  }
}

export async function recordBuildStats(
  configHash: string,
  update: Partial<Omit<BuildStats, 'configHash' | 'updatedAt'>>,
): Promise<void> {
  const prev = await readBuildStats(configHash);
  await writeJsonAtomic(statsFile(configHash), { ...prev, ...update, configHash, updatedAt: new Date().toISOString() });
}

/** One compiled object as fixdep recorded it: its target and every file it was built from. */
export interface CmdFileDeps {
  target: string;
  source: string;
  /** Files the object depends on; make ignores a missing one only when it is a $(wildcard ...). */
  deps: Array<{ path: string; optional: boolean }>;
}

/** Parse a kbuild .cmd file; undefined for one that records no compiled source (archives, links, generated files). */
export function parseCmdFile(text: string): CmdFileDeps | undefined {
  const source = /^source_(\S+) := (\S+)$/m.exec(text);
  if (!source) return undefined;
  const target = source[1]!;
  const deps: CmdFileDeps['deps'] = [];
  const start = text.indexOf(`deps_${target} := \\\n`);
  if (start >= 0) {
    for (const raw of text.slice(start).split('\n').slice(1)) {
      const l = raw.trim();
      if (!l) break;
      const body = l.replace(/\s*\\$/, '');
      const w = /^\$\(wildcard (\S+)\)$/.exec(body);
      if (w) deps.push({ path: w[1]!, optional: true });
      else if (body) deps.push({ path: body, optional: false });
      if (!l.endsWith('\\')) break;
    }
  }
  // The object also depends on objtool, which rewrites it after compiling.
  for (const m of text.matchAll(new RegExp(`^${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: \\$\\(wildcard (\\S+)\\)$`, 'gm')))
    deps.push({ path: m[1]!, optional: true });
  return { target, source: source[2]!, deps };
}

/**
 * The .cmd files under an object dir. Walked by hand: the dir holds kbuild's
 * `source -> ..` link, and Node 20's recursive readdir follows links (into
 * the source tree, and round again).
 */
async function cmdFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  await Promise.all(
    entries.map(async (e) => {
      if (e.isDirectory()) out.push(...(await cmdFiles(join(dir, e.name))));
      else if (e.isFile() && e.name.startsWith('.') && e.name.endsWith('.cmd')) out.push(join(dir, e.name));
    }),
  );
  return out;
}

/**
 * Objects of an earlier build in `objDir` that make will compile again: the
 * object is gone, or a file it depends on is newer than it or gone. Paths in
 * kbuild's .cmd files are relative to the object dir. Objects built by the
 * tools/ build system (objtool: absolute targets) are left out; nothing
 * qcrash builds changes them.
 */
export async function staleObjects(objDir: string): Promise<{ stale: string[]; objects: number }> {
  const mtimes = new Map<string, Promise<number | undefined>>();
  const mtime = (p: string) => {
    const abs = isAbsolute(p) ? p : join(objDir, p);
    let m = mtimes.get(abs);
    if (!m) {
      m = stat(abs).then(
        (s) => s.mtimeMs,
        () => undefined,
      );
      mtimes.set(abs, m);
    }
    return m;
  };
  const stale: string[] = [];
  let objects = 0;
  const files = await cmdFiles(objDir);
  // Bounded parallelism: a build has about a thousand .cmd files, each listing hundreds of headers.
  for (let i = 0; i < files.length; i += 64) {
    await Promise.all(
      files.slice(i, i + 64).map(async (f) => {
        const parsed = parseCmdFile(await readFile(f, 'utf8').catch(() => ''));
        if (!parsed || isAbsolute(parsed.target)) return;
        objects++;
        const built = await mtime(parsed.target);
        if (built === undefined) return void stale.push(parsed.target);
        for (const d of [{ path: parsed.source, optional: false }, ...parsed.deps]) {
          const m = await mtime(d.path);
          if (m === undefined ? !d.optional : m > built) return void stale.push(parsed.target);
        }
      }),
    );
  }
  return { stale: stale.sort(), objects };
}

/**
 * `make -n` for a build (`argv` is make's arguments, without -n): the
 * compile steps it lists (`planned`), and the ones it really ran
 * (`builtNow`: objtool, whose own make ignores -n). -k because a dry run
 * stops where a real build would first have made something it needs;
 * objtool's output directory is created so the dry run gets past it into the
 * kernel's own directories.
 */
export async function dryRunCompileCount(
  make: string,
  argv: string[],
  opts: { env: Record<string, string>; objDir: string },
): Promise<{ planned: number; builtNow: number }> {
  await mkdir(join(opts.objDir, 'tools', 'objtool'), { recursive: true });
  const child = execa(make, ['-n', '-k', ...argv], { env: opts.env, reject: false, all: true, buffer: false, stdin: 'ignore' });
  let planned = 0;
  let builtNow = 0;
  let tail = '';
  const count = (l: string) => {
    planned += dryRunCompiledObjects(l).length;
    if (compiledObject(l) !== undefined) builtNow++;
  };
  child.all?.on('data', (d: Buffer) => {
    const lines = (tail + d.toString()).split('\n');
    tail = lines.pop() ?? '';
    lines.forEach(count);
  });
  await child;
  count(tail);
  return { planned, builtNow };
}

export interface PlannedBuild {
  estimate: BuildEstimate | undefined;
  /** Objects of the earlier build whose dependencies changed (incremental builds). */
  stale?: number;
  /** Objects the dry run already compiled (objtool): part of a from-scratch build's count. */
  builtByDryRun?: number;
}

/** The estimate for the build about to run in `objDir` with this .config. */
export async function estimateBuild(o: {
  objDir: string;
  configHash: string;
  hadBuild: boolean;
  dryRun: () => Promise<{ planned: number; builtNow: number }>;
}): Promise<PlannedBuild> {
  const stats = await readBuildStats(o.configHash);
  if (o.hadBuild) {
    const { stale } = await staleObjects(o.objDir);
    const relink = stats?.relinkObjects ?? defaultRelinkObjects;
    const objects = stale.length ? stale.length + relink : 0;
    return {
      estimate: {
        objects,
        source: `${stale.length} changed since the last build here${stale.length ? ` + ${relink} relinking` : ''}`,
      },
      stale: stale.length,
    };
  }
  if (stats?.fullBuildObjects) {
    // An object dir without vmlinux may still hold the objects of a build that failed half way.
    const { stale, objects } = await staleObjects(o.objDir);
    const upToDate = objects - stale.length;
    return {
      estimate: {
        objects: Math.max(0, stats.fullBuildObjects - upToDate),
        source: `an earlier build of this config${upToDate ? `, less ${upToDate} already built` : ''}`,
      },
    };
  }
  const { planned, builtNow } = await o.dryRun();
  if (planned <= 0) return { estimate: undefined, builtByDryRun: builtNow };
  return {
    estimate: { objects: planned + dryRunMisses, source: `make -n lists ${planned}, + ${dryRunMisses} it cannot see` },
    builtByDryRun: builtNow,
  };
}
