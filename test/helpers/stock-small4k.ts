import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { detectAccel } from '../../harness/vm/machine/accel.ts';
import { toolVersions } from '../../harness/run/versions.ts';
import { agentReadySnapshot } from '../../harness/vm/machine/snapshot-cache.ts';
import { MachinePool } from '../../harness/vm/machine/pool.ts';

/**
 * What the real-VM tests of restores start from: the stock kernel, its
 * initramfs, small-4k's base image, a one-slot pool, and the agent-ready
 * state saved (or taken from the cache) for them.
 */
export async function stockSmall4kWithSnapshot() {
  const kernel = await stockKernel();
  const initrd = (await buildInitramfs(kernel)).path;
  const base = await buildImage(await loadRecipe('small-4k'));
  const accel = (await detectAccel()).accel;
  const machines = new MachinePool({ slots: 1 });
  const snapshot = await agentReadySnapshot(machines, kernel, initrd, base, accel, (await toolVersions(kernel.release)).qemu);
  return { kernel, initrd, base, accel, machines, snapshot };
}
