import { readdir, access } from 'node:fs/promises';
import { MissingToolError } from '../util/errors.ts';
import type { KernelInfo } from './kernel.ts';

/**
 * Debian's linux-image-cloud-amd64: the embedded default kernel. Its virtio
 * drivers are modules (the initramfs carries them); ext4 and jbd2 are built
 * in, so their symbols are in System.map and gdbstub points resolve with
 * `nokaslr`.
 */
export async function stockKernel(): Promise<KernelInfo> {
  const boot = await readdir('/boot').catch(() => [] as string[]);
  const newest = boot.filter((f) => /^vmlinuz-.*-cloud-amd64$/.test(f)).sort(compareRelease).at(-1);
  if (!newest) throw new MissingToolError('the stock kernel (/boot/vmlinuz-*-cloud-amd64)', 'linux-image-cloud-amd64');
  const release = newest.slice('vmlinuz-'.length);
  const modulesDir = `/lib/modules/${release}`;
  try {
    await access(modulesDir);
  } catch {
    throw new MissingToolError(`kernel modules in ${modulesDir}`, `linux-image-${release}`);
  }
  const systemMap = `/boot/System.map-${release}`;
  const hasMap = await access(systemMap).then(() => true, () => false);
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

function compareRelease(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
