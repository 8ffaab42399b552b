import { execSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../harness/util/paths.ts';

export const qcrashBin = join(projectRoot, 'bin', 'qcrash.js');

/** PIDs of qemu-system processes whose command line mentions `needle` (a temp dir). */
export function qemuPids(needle?: string): number[] {
  let out: string;
  try {
    out = execSync('pgrep -af qemu-system', { encoding: 'utf8' });
  } catch {
    return [];
  }
  return out
    .split('\n')
    .filter((l) => l.trim() && (!needle || l.includes(needle)) && !l.includes('pgrep'))
    .map((l) => Number(l.split(' ')[0]));
}

export async function qcrashTempDirs(base = process.env.QCRASH_TMPDIR || tmpdir()): Promise<string[]> {
  return (await readdir(base)).filter((f) => f.startsWith('qcrash-'));
}
