import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { MissingToolError } from './errors.ts';

/**
 * Every host program the harness runs, with the Debian package that has it.
 * `qcrash doctor` reports from this table and errors name the package.
 */
export const hostTools = {
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-img': 'qemu-utils',
  e2fsck: 'e2fsprogs',
  debugfs: 'e2fsprogs',
  'mkfs.ext4': 'e2fsprogs',
  tune2fs: 'e2fsprogs',
  dumpe2fs: 'e2fsprogs',
  e2undo: 'e2fsprogs',
  busybox: 'busybox-static',
  cpio: 'cpio',
  setpriv: 'util-linux',
  git: 'git',
  make: 'make',
  gcc: 'gcc',
  bc: 'bc',
  flex: 'flex',
  bison: 'bison',
  ccache: 'ccache',
} as const;
export type HostTool = keyof typeof hostTools;

/** Debian keeps e2fsprogs and some tools in sbin, which a non-root PATH may lack. */
const extraDirs = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];
const found = new Map<string, string>();

export async function findProgram(name: string): Promise<string | undefined> {
  const cached = found.get(name);
  if (cached) return cached;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs];
  for (const d of dirs) {
    const p = join(d, name);
    try {
      await access(p, constants.X_OK);
      found.set(name, p);
      return p;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}

/** The absolute path of a host tool, or a MissingToolError naming its Debian package. */
export async function tool(name: HostTool): Promise<string> {
  const p = await findProgram(name);
  if (!p) throw new MissingToolError(name, hostTools[name]);
  return p;
}
