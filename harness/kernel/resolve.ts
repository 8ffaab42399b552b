import { access, open, readdir, readFile } from 'node:fs/promises';
import { join, resolve, dirname } from 'node:path';
import { ConfigError, InfraError } from '../util/errors.ts';
import { cacheDir } from '../util/paths.ts';
import { didYouMean } from '../util/suggest.ts';
import type { KernelInfo } from './kernel.ts';
import { stockKernel } from './stock.ts';
import { builtKernelEntry, listKernelIds } from './build.ts';

/** Kernels qcrash built, from the cache (each folder holds kernel.json). */
export async function listBuiltKernels(): Promise<KernelInfo[]> {
  const root = cacheDir('kernels');
  const out: KernelInfo[] = [];
  for (const d of await readdir(root).catch(() => [] as string[])) {
    try {
      out.push(JSON.parse(await readFile(join(root, d, 'kernel.json'), 'utf8')) as KernelInfo);
    } catch {
      /* a half-written or foreign folder */
    }
  }
  return out;
}

/**
 * `--kernel`: "stock" (Debian's cloud kernel), a kernel id (or unique prefix)
 * from `qcrash kernel list`, or a path to a bzImage (a System.map beside it is
 * used for kernel crash points). A bzImage given by path is assumed to have
 * virtio and ext4 built in, as the minimal config fragment does.
 */
export async function resolveKernel(spec: string): Promise<KernelInfo> {
  if (spec === 'stock') return stockKernel();
  if (spec.includes('/') || spec.endsWith('bzImage')) {
    const p = resolve(spec);
    if (
      !(await access(p).then(
        () => true,
        () => false,
      ))
    )
      throw new ConfigError(`--kernel ${spec}: no such file`);
    if (!(await isBzImage(p))) {
      throw new ConfigError(
        `--kernel ${spec} is not a bzImage (no "HdrS" x86 boot header at byte 0x202): give arch/x86/boot/bzImage of a build, "stock", or a kernel id from qcrash kernel list`,
      );
    }
    const map = join(dirname(p), 'System.map');
    const hasMap = await access(map).then(
      () => true,
      () => false,
    );
    return {
      id: `path-${p}`,
      kind: 'path',
      release: 'unknown',
      bzImage: p,
      ...(hasMap ? { systemMap: map } : {}),
      builtinDrivers: true,
    };
  }
  // By folder name, so that a kernel whose kernel.json was damaged is found and named, not "unknown".
  const ids = await listKernelIds();
  const matches = ids.includes(spec) ? [spec] : ids.filter((id) => id.startsWith(spec));
  if (matches.length > 1) throw new ConfigError(`--kernel ${spec} is ambiguous: ${matches.join(', ')}`);
  if (matches.length === 0)
    throw new ConfigError(
      `--kernel ${spec}: not "stock", not a bzImage path and not a built kernel id.${didYouMean(spec, ['stock', ...ids])} See: qcrash kernel list`,
    );
  const dir = cacheDir('kernels', matches[0]!);
  const entry = builtKernelEntry(dir);
  const found = await entry.check();
  // A kernel id cannot be rebuilt from here (its sources and patches are the user's): say how.
  if (found.state !== 'ok') {
    const why = found.state === 'bad' ? found.reason : 'it is missing';
    throw new InfraError(
      `built kernel ${matches[0]} in the cache is damaged (${why}): build it again with the same \`qcrash kernel build\` options, or remove it with \`qcrash cache clean --kernels\``,
    );
  }
  return JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')) as KernelInfo;
}

/** The x86 boot protocol's header signature, which every bzImage carries at 0x202. */
async function isBzImage(path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0x202);
    return bytesRead === 4 && b.toString('latin1') === 'HdrS';
  } catch {
    return false;
  } finally {
    await fh.close();
  }
}
