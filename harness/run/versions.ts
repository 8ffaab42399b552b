import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createHash } from 'node:crypto';
import { run } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { projectRoot } from '../util/paths.ts';
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

/** What makes one qcrash differ from another: its code, the guest it builds, the recipes. */
const buildInputs = ['harness', 'vm-images/guest', 'vm-images/recipes', 'bin', 'package.json', 'package-lock.json'];

let memo: Promise<string> | undefined;

/**
 * A hash of qcrash's own sources: results made by two builds do not mix
 * (--resume refuses), since the package version stays 0.1.0 across changes.
 */
export function qcrashBuild(): Promise<string> {
  memo ??= (async () => {
    const h = createHash('sha256');
    const files: string[] = [];
    const walk = async (p: string): Promise<void> => {
      const entries = await readdir(p, { withFileTypes: true }).catch(() => undefined);
      if (!entries) {
        files.push(p);
        return;
      }
      for (const e of entries) await walk(join(p, e.name));
    };
    for (const i of buildInputs) await walk(join(projectRoot, i));
    for (const f of files.sort()) {
      const data = await readFile(f).catch(() => undefined);
      if (!data) continue;
      h.update(relative(projectRoot, f)).update('\0').update(data).update('\0');
    }
    return h.digest('hex').slice(0, 16);
  })();
  return memo;
}
