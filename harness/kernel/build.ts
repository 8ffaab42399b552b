import { access, copyFile, mkdir, readFile, rename, rm, writeFile, readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { execa } from 'execa';
import { ConfigError, InfraError } from '../util/errors.ts';
import { cacheDir } from '../util/paths.ts';
import { hashJson, sha256 } from '../util/hash.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import { closeMatches } from '../util/suggest.ts';
import { tool } from '../util/tools.ts';
import { onInterrupt } from '../util/cleanup.ts';
import { CacheEntry, useCacheEntry } from '../util/cache-entry.ts';
import type { KernelInfo } from './kernel.ts';
import { git, gitTreeSource, tarballSource, type KernelSource } from './source.ts';
import { BuildProgress, type ProgressSink } from './build-progress.ts';
import { dryRunCompileCount, estimateBuild, recordBuildStats } from './build-estimate.ts';
import { defaultLine, fragmentFor, kernelLine, lineOfRelease } from './lines.ts';

const BUILDER_VERSION = 1;

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/** A tree that does not build: keeps the compiler's error lines and the log. */
export class KernelBuildError extends ConfigError {
  constructor(
    message: string,
    readonly errorLines: string[],
    readonly logPath: string,
  ) {
    super(`${message}\n${errorLines.slice(0, 20).join('\n')}\n(full log: ${logPath})`);
  }
}

export interface BuildOptions {
  /** A kernel tree (git); default: the line's Debian linux-source tarball. */
  tree?: string;
  /** Kernel line ("6.1", "6.12") whose linux-source tarball and config fragments to use when no tree is given (default 6.1). */
  line?: string;
  /** Revision of `tree` to build (default HEAD). */
  rev?: string;
  /** Patches applied in order: git format-patch/mbox files (git am) or plain diffs (git apply). */
  patches?: string[];
  /** Config fragments on top of tinyconfig (a name is looked up per line: kernels/configs/<line>/<name>.config, else kernels/configs/<name>.config); default minimal. */
  configs?: string[];
  jobs?: number;
  /** Progress text: patches applied, one line for the compile (see build-progress.ts), the result. */
  onProgress?: ProgressSink;
}

interface Patch {
  file: string;
  subject: string;
  sha256: string;
  text: string;
}

async function readPatch(file: string): Promise<Patch> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new ConfigError(`patch not found: ${file}`);
  }
  const subject =
    /^Subject:\s*(.+)$/m.exec(text)?.[1]?.trim() ??
    text
      .split('\n')
      .find((l) => l.trim())
      ?.trim() ??
    basename(file);
  return { file: resolve(file), subject, sha256: sha256(text), text };
}

/** A CONFIG_ option a fragment sets, with its file and line for error messages. */
interface FragmentOption {
  name: string;
  value: string;
  line: number;
  file: string;
}

/** One option per line of a fragment, with its line for error messages. */
export async function readFragment(file: string): Promise<FragmentOption[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new ConfigError(`config fragment not found: ${file}`);
  }
  const out: FragmentOption[] = [];
  text.split('\n').forEach((l, i) => {
    const set = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(l.trim());
    const unset = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(l.trim());
    if (set) out.push({ name: set[1]!, value: set[2]!, line: i + 1, file });
    else if (unset) out.push({ name: unset[1]!, value: 'n', line: i + 1, file });
  });
  return out;
}

/** Serialize builds of one source: they share its work tree and object dir. */
async function lock(dir: string): Promise<() => Promise<void>> {
  const l = `${dir}.lock`;
  for (let i = 0; ; i++) {
    try {
      await mkdir(l, { recursive: false });
      await writeFile(join(l, 'pid'), String(process.pid));
      return () => rm(l, { recursive: true, force: true });
    } catch {
      const pid = Number(await readFile(join(l, 'pid'), 'utf8').catch(() => '0'));
      let alive: boolean;
      try {
        if (pid > 0) process.kill(pid, 0);
        alive = pid > 0;
      } catch {
        alive = false;
      }
      if (!alive) await rm(l, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** The files of a built kernel's cache entry that its seal covers. */
const kernelEntryFiles = ['bzImage', 'System.map', 'kernel.json'] as const;

/** A built kernel's cache folder as a sealed entry. */
export function builtKernelEntry(dir: string): CacheEntry {
  return CacheEntry.folder('built kernel', dir, kernelEntryFiles);
}

/**
 * Build (or fetch from the cache) a kernel: source + ordered patches +
 * config fragments. The identity hashes all of them; the output folder
 * holds bzImage, System.map, .config, build.log and kernel.json, sealed by
 * content (a changed bzImage is rebuilt, never booted).
 */
/**
 * A built kernel's id: its source, patches and the options its fragments set.
 * The options, not the fragments' text: a comment edited in a fragment is
 * the same kernel, and is not built again.
 */
export function kernelBuildId(
  source: Pick<KernelSource, 'id' | 'base'>,
  patches: readonly Pick<Patch, 'sha256'>[],
  fragments: readonly (readonly Pick<FragmentOption, 'name' | 'value'>[])[],
): string {
  const options = fragments.map((f) => f.map((o) => `${o.name}=${o.value}`));
  return `build-${hashJson({ BUILDER_VERSION, source: source.id, base: source.base, patches: patches.map((p) => p.sha256), options }).slice(0, 16)}`;
}

export async function buildKernel(o: BuildOptions = {}): Promise<KernelInfo> {
  const line = o.line ? kernelLine(o.line) : defaultLine;
  const source: KernelSource = o.tree ? await gitTreeSource(o.tree, o.rev) : await tarballSource(line.tarball);
  const patches = await Promise.all((o.patches ?? []).map(readPatch));
  const fragFiles = await Promise.all(
    (o.configs?.length ? o.configs : ['minimal']).map(async (f) =>
      resolve(f.includes('/') || f.endsWith('.config') ? f : await fragmentFor(f, line)),
    ),
  );
  const fragments = await Promise.all(fragFiles.map(readFragment));
  const id = kernelBuildId(source, patches, fragments);
  const out = cacheDir('kernels', id);
  const outcome = await useCacheEntry(builtKernelEntry(out), async () => {
    const unlock = await lock(source.work);
    try {
      await buildLocked(o, source, patches, fragFiles, fragments.flat(), id, out);
    } finally {
      await unlock();
    }
  });
  if (outcome === 'hit') o.onProgress?.(`${id}: built before, taken from the cache`);
  return JSON.parse(await readFile(join(out, 'kernel.json'), 'utf8')) as KernelInfo;
}

async function buildLocked(
  o: BuildOptions,
  source: KernelSource,
  patches: Patch[],
  fragFiles: string[],
  options: FragmentOption[],
  id: string,
  out: string,
): Promise<KernelInfo> {
  const progress = o.onProgress ?? (() => {});
  await applyPatches(source, patches, progress);
  await mkdir(source.obj, { recursive: true });
  const make = await KernelMake.create(source);
  await configure(make, source, fragFiles, options);
  await compile(make, source, String(o.jobs ?? availableParallelism()), progress);
  const release = (
    await execa(make.make, ['-s', '-C', source.work, `O=${source.obj}`, 'kernelrelease'], { reject: false })
  ).stdout.trim();
  const info = await installBuild(source, { id, out, release, patches, fragFiles, buildLog: make.logPath });
  progress(`built ${id} (${info.release})`);
  return info;
}

/**
 * The work tree back to the pristine base, then the patches applied in order.
 * git checkout only rewrites files that differ, so unchanged sources keep
 * their timestamps and make rebuilds only what changed.
 */
async function applyPatches(source: KernelSource, patches: readonly Patch[], progress: ProgressSink): Promise<void> {
  const w = source.work;
  await git(w, ['am', '--abort'], false);
  await git(w, ['checkout', '-q', '-f', '--detach', source.base]);
  await git(w, ['clean', '-fdq']);
  for (const p of patches) {
    const isMail = /^From [0-9a-f]{40} /m.test(p.text) || /^Subject: /m.test(p.text);
    const r = isMail ? await git(w, ['am', '-q', '--3way', p.file], false) : await git(w, ['apply', '--index', p.file], false);
    if (r.failed) {
      await git(w, ['am', '--abort'], false);
      await git(w, ['checkout', '-q', '-f', source.base]);
      throw new ConfigError(
        `patch does not apply: ${p.file} ("${p.subject}")\n${(r.stderr || r.stdout).trim().split('\n').slice(0, 15).join('\n')}`,
      );
    }
    progress(`applied ${basename(p.file)}: ${p.subject}`);
  }
}

/**
 * make in the source's work tree, objects in its object dir, compiling
 * through ccache. Its output goes to build.log only; a build shows one
 * progress line instead of its CC lines.
 */
class KernelMake {
  readonly logPath: string;
  private readonly log: string[] = [];
  readonly env: Record<string, string>;

  private constructor(
    readonly make: string,
    private readonly ccache: string,
    private readonly source: KernelSource,
  ) {
    this.logPath = join(source.obj, 'build.log');
    // CCACHE_BASEDIR: any absolute path left under the work tree is hashed as a relative one.
    this.env = {
      CCACHE_DIR: cacheDir('ccache'),
      CCACHE_BASEDIR: source.work,
      KBUILD_BUILD_TIMESTAMP: '2026-01-01',
      KBUILD_BUILD_USER: 'qcrash',
      KBUILD_BUILD_HOST: 'qcrash',
    };
  }

  static async create(source: KernelSource): Promise<KernelMake> {
    return new KernelMake(await tool('make'), await tool('ccache'), source);
  }

  /** make's arguments for `args` in this tree. */
  args(args: string[]): string[] {
    return ['-C', this.source.work, `O=${this.source.obj}`, `CC=${this.ccache} gcc`, ...args];
  }

  /** Run make; a failure keeps its error lines and the log. */
  async run(args: string[], what: string, meter?: BuildProgress): Promise<void> {
    const child = execa(this.make, this.args(args), { env: this.env, reject: false, all: true, buffer: false, stdin: 'ignore' });
    const stop = onInterrupt(() => child.kill('SIGTERM'));
    const ticker = meter ? setInterval(() => meter.tick(), 1000) : undefined;
    ticker?.unref();
    let tail = '';
    child.all?.on('data', (d: Buffer) => {
      const text = tail + d.toString();
      const lines = text.split('\n');
      tail = lines.pop() ?? '';
      for (const l of lines) this.logLine(l, meter);
    });
    const r = await child;
    stop();
    clearInterval(ticker);
    if (tail) this.logLine(tail, meter);
    meter?.finish(r.exitCode === 0);
    await writeFile(this.logPath, this.log.join('\n') + '\n');
    if (r.exitCode !== 0) {
      const errs = this.log.filter((l) => /\berror\b|Error \d+/.test(l));
      throw new KernelBuildError(
        `kernel ${what} failed (make exit ${r.exitCode})`,
        errs.length ? errs : this.log.slice(-20),
        this.logPath,
      );
    }
  }

  private logLine(l: string, meter: BuildProgress | undefined): void {
    this.log.push(l);
    meter?.line(l);
  }
}

/** .config from tinyconfig and the fragments; every fragment option must have come through. */
async function configure(
  make: KernelMake,
  source: KernelSource,
  fragFiles: readonly string[],
  options: FragmentOption[],
): Promise<void> {
  const w = source.work;
  await make.run(['tinyconfig'], 'tinyconfig');
  const merge = await execa(
    join(w, 'scripts/kconfig/merge_config.sh'),
    ['-m', '-O', source.obj, join(source.obj, '.config'), ...fragFiles],
    { cwd: w, reject: false, all: true },
  );
  if (merge.exitCode !== 0) throw new InfraError(`merge_config.sh failed:\n${String(merge.all).slice(-2000)}`);
  await make.run(['olddefconfig'], 'olddefconfig');
  await verifyConfig(join(source.obj, '.config'), options, w);
  // What the build would do first anyway; done here so that include/config/*
  // already say which options changed when the estimate reads them.
  await make.run(['syncconfig'], 'syncconfig');
}

/** make bzImage with a progress line from the estimate, then what the build taught the estimate. */
async function compile(make: KernelMake, source: KernelSource, jobs: string, progress: ProgressSink): Promise<void> {
  const configHash = sha256(await readFile(join(source.obj, '.config'), 'utf8')).slice(0, 16);
  const hadBuild = await exists(join(source.obj, 'vmlinux'));
  const plan = await estimateBuild({
    objDir: source.obj,
    configHash,
    hadBuild,
    dryRun: () => {
      progress('kernel build: counting the objects to compile (make -n)');
      return dryRunCompileCount(make.make, make.args(['bzImage']), { env: make.env, objDir: source.obj });
    },
  });
  const meter = new BuildProgress(plan.estimate, progress);
  await make.run(['-j', jobs, 'bzImage'], 'build', meter);
  if (!hadBuild) await recordBuildStats(configHash, { fullBuildObjects: meter.compiled + (plan.builtByDryRun ?? 0) });
  else if (plan.stale) await recordBuildStats(configHash, { relinkObjects: Math.max(0, meter.compiled - plan.stale) });
}

/**
 * The built kernel's files and kernel.json into a sealed cache entry at `out`,
 * made beside it and renamed into place.
 */
async function installBuild(
  source: KernelSource,
  b: { id: string; out: string; release: string; patches: readonly Patch[]; fragFiles: string[]; buildLog: string },
): Promise<KernelInfo> {
  const { out } = b;
  const tmpOut = `${out}.tmp-${process.pid}`;
  await rm(tmpOut, { recursive: true, force: true });
  await mkdir(tmpOut, { recursive: true });
  await copyFile(join(source.obj, 'arch/x86/boot/bzImage'), join(tmpOut, 'bzImage'));
  await copyFile(join(source.obj, 'System.map'), join(tmpOut, 'System.map'));
  await copyFile(join(source.obj, '.config'), join(tmpOut, 'config'));
  await copyFile(b.buildLog, join(tmpOut, 'build.log'));
  const config = await readFile(join(source.obj, '.config'), 'utf8');
  const info: KernelInfo = {
    id: b.id,
    kind: 'built',
    release: b.release || 'unknown',
    ...(lineOfRelease(b.release) ? { line: lineOfRelease(b.release)!.name } : {}),
    bzImage: join(out, 'bzImage'),
    systemMap: join(out, 'System.map'),
    builtinDrivers: true,
    acpi: /^CONFIG_ACPI=y$/m.test(config),
    provenance: {
      source: source.describe,
      base: source.base,
      patches: b.patches.map((p) => ({ file: p.file, subject: p.subject, sha256: p.sha256 })),
      configs: b.fragFiles,
      configHash: sha256(config).slice(0, 16),
    },
  };
  await writeJsonAtomic(join(tmpOut, 'kernel.json'), info);
  await builtKernelEntry(tmpOut).seal();
  await mkdir(cacheDir('kernels'), { recursive: true });
  await rm(out, { recursive: true, force: true });
  await rename(tmpOut, out);
  return info;
}

/** Every fragment option must be in .config with its value; otherwise name it, its line, and close matches. */
async function verifyConfig(dotConfig: string, options: FragmentOption[], tree: string): Promise<void> {
  const text = await readFile(dotConfig, 'utf8');
  const actual = new Map<string, string>();
  for (const l of text.split('\n')) {
    const m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(l);
    if (m) actual.set(m[1]!, m[2]!);
  }
  for (const opt of options) {
    const got = actual.get(opt.name) ?? 'n';
    if (got === opt.value) continue;
    const known = await kconfigSymbols(tree);
    const bare = opt.name.slice('CONFIG_'.length);
    if (!known.has(bare)) {
      const m = closeMatches(bare, known, 5).map((x) => `CONFIG_${x}`);
      throw new ConfigError(`unknown kernel config option ${opt.name}${m.length ? `. Close matches: ${m.join(', ')}` : ''}`, {
        file: opt.file,
        line: opt.line,
      });
    }
    throw new ConfigError(
      `${opt.name}=${opt.value} was dropped by Kconfig (it is ${got === 'n' ? 'not set' : got}); a dependency is missing`,
      { file: opt.file, line: opt.line },
    );
  }
}

const kconfigCache = new Map<string, Set<string>>();
async function kconfigSymbols(tree: string): Promise<Set<string>> {
  let s = kconfigCache.get(tree);
  if (s) return s;
  s = new Set<string>();
  const r = await execa('git', ['grep', '-h', '-E', '^\\s*(menu)?config [A-Z0-9_]+', '--', '*Kconfig*'], {
    cwd: tree,
    reject: false,
  });
  for (const l of String(r.stdout).split('\n')) {
    const m = /^\s*(?:menu)?config ([A-Z0-9_]+)/.exec(l);
    if (m) s.add(m[1]!);
  }
  kconfigCache.set(tree, s);
  return s;
}

export async function listKernelIds(): Promise<string[]> {
  return (await readdir(cacheDir('kernels')).catch(() => [] as string[])).filter(
    (d) => d.startsWith('build-') && !d.includes('.tmp-'),
  );
}
