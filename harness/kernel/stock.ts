import { readdir, access, open } from 'node:fs/promises';
import { MissingToolError } from '../util/errors.ts';
import type { KernelInfo } from './kernel.ts';

/**
 * Debian's linux-image-cloud-amd64: the embedded default kernel. Its virtio
 * drivers are modules (the initramfs carries them); ext4 and jbd2 are built
 * in. Its System.map is a placeholder, so gdbstub points resolve through
 * the guest's /proc/kallsyms (stable across boots with `nokaslr`).
 */
export async function stockKernel(): Promise<KernelInfo> {
  const boot = await readdir('/boot').catch(() => [] as string[]);
  const newest = boot
    .filter((f) => /^vmlinuz-.*-cloud-amd64$/.test(f))
    .sort(compareRelease)
    .at(-1);
  if (!newest) throw new MissingToolError('the stock kernel (/boot/vmlinuz-*-cloud-amd64)', 'linux-image-cloud-amd64');
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
    provenance: { package: 'linux-image-cloud-amd64', release },
  };
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
