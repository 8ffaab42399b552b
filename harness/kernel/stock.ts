import { readdir, access, open } from 'node:fs/promises';
import { MissingToolError } from '../util/errors.ts';
import type { KernelInfo } from './kernel.ts';
import { defaultLine, type KernelLine } from './lines.ts';

/**
 * Debian's stock cloud kernel of a line (default 6.1, linux-image-cloud-amd64:
 * the embedded default; 6.12 is linux-image-6.12-cloud-amd64). Its virtio
 * drivers are modules (the initramfs carries them); ext4 and jbd2 are built
 * in. Its System.map is a placeholder, so gdbstub points resolve through
 * the guest's /proc/kallsyms (stable across boots with `nokaslr`).
 */
export async function stockKernel(line: KernelLine = defaultLine): Promise<KernelInfo> {
  const newest = await newestStockImage(line);
  if (!newest)
    throw new MissingToolError(`the stock ${line.name} kernel (/boot/vmlinuz-${line.name}.*-cloud-amd64)`, line.imagePackage);
  const release = newest.slice('vmlinuz-'.length);
  const modulesDir = `/lib/modules/${release}`;
  try {
    await access(modulesDir);
  } catch {
    throw new MissingToolError(`kernel modules in ${modulesDir}`, `linux-image-${release}`);
  }
  const systemMap = `/boot/System.map-${release}`;
  const hasMap = await isRealSystemMap(systemMap);
  return {
    id: `stock-${release}`,
    kind: 'stock',
    release,
    bzImage: `/boot/${newest}`,
    ...(hasMap ? { systemMap } : {}),
    modulesDir,
    builtinDrivers: false,
    acpi: true,
    line: line.name,
    provenance: { package: line.imagePackage, release, line: line.name },
  };
}

/** The newest /boot/vmlinuz-<release> of a line (both lines install side by side), or undefined. */
export async function newestStockImage(line: KernelLine): Promise<string | undefined> {
  const boot = await readdir('/boot').catch(() => [] as string[]);
  return boot
    .filter((f) => f.startsWith('vmlinuz-') && line.release.test(f.slice('vmlinuz-'.length)))
    .sort(compareRelease)
    .at(-1);
}

/**
 * Debian ships a one-line placeholder ("The real System.map is in the
 * linux-image-<version>-dbg package"): treat it as absent, so symbols come
 * from the guest's /proc/kallsyms.
 */
async function isRealSystemMap(path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(4096), 0, 4096, 0);
    const head = buffer.subarray(0, bytesRead).toString('utf8');
    return !head.includes('The real System.map is in') && head.split('\n').length > 10;
  } finally {
    await fh.close();
  }
}

function compareRelease(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
