import { run } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import type { ToolVersions } from '../results/run.ts';

export async function toolVersions(kernelRelease: string): Promise<ToolVersions> {
  const q = await run(await tool('qemu-system-x86_64'), ['--version']);
  const e = await run(await tool('e2fsck'), ['-V']);
  return {
    qemu: /version (\S+)/.exec(q.stdout)?.[1] ?? 'unknown',
    e2fsprogs: /e2fsck (\S+)/.exec(e.stderr + e.stdout)?.[1] ?? 'unknown',
    kernel: kernelRelease,
    node: process.version,
  };
}
