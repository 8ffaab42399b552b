import { lstat, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';

/**
 * Pack a directory tree into a newc cpio archive (the format the kernel
 * unpacks as an initramfs), owned by root whatever the builder's uid.
 * Entries are sorted (a parent sorts before its children) so the same tree
 * gives the same archive.
 */
export async function writeNewcArchive(root: string, out: string): Promise<void> {
  const entries = (await listTree(root))
    .map((p) => relative(root, p))
    .filter(Boolean)
    .sort();
  await runOk(await tool('cpio'), ['-o', '-H', 'newc', '-R', '0:0', '--reproducible', '--quiet', '-O', out], {
    cwd: root,
    input: entries.join('\n') + '\n',
  });
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [dir];
  for (const e of await readdir(dir)) {
    const p = join(dir, e);
    if ((await lstat(p)).isDirectory()) out.push(...(await listTree(p)));
    else out.push(p);
  }
  return out;
}
