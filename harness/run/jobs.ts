import { availableParallelism, freemem } from 'node:os';

/**
 * Host memory one workload VM takes: the guest's 256 MiB plus QEMU and TCG's
 * translation buffers: a running qcrash VM showed about 310 MiB RSS here,
 * rounded up for headroom.
 */
export const vmMemoryMiB = 512;

/** VMs at once when the user does not say: one per core, but no more than free memory holds. */
export function defaultJobs(): number {
  const byMemory = Math.floor(freemem() / (vmMemoryMiB * 1024 * 1024));
  return Math.max(1, Math.min(availableParallelism(), byMemory));
}
