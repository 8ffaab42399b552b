import { run } from '../util/exec.ts';
import { findProgram, tool } from '../util/tools.ts';
import { MissingToolError } from '../util/errors.ts';

/**
 * e2fsprogs' programs the guest runs. Debian's busybox-static has no
 * chattr/lsattr, so the real ones go in with their shared libraries.
 */
const e2fsprogsPrograms = ['chattr', 'lsattr', 'filefrag'] as const;

export interface GuestUserland {
  busybox: string;
  /** Absolute host paths of the dynamically linked programs. */
  programs: string[];
  /** Absolute host paths of their libraries and the dynamic loader, as ldd names them. */
  libraries: string[];
}

export async function findGuestUserland(): Promise<GuestUserland> {
  const busybox = await tool('busybox');
  const programs: string[] = [];
  for (const name of e2fsprogsPrograms) {
    const p = await findProgram(name);
    if (!p) throw new MissingToolError(name, 'e2fsprogs');
    programs.push(p);
  }
  return { busybox, programs, libraries: await sharedLibraries(programs) };
}

/**
 * The shared libraries and the loader that `ldd` lists. The guest looks them
 * up by the same paths (ld.so's built-in multiarch directories and the
 * loader's absolute path in PT_INTERP), so they are copied to those paths.
 */
export async function sharedLibraries(programs: readonly string[]): Promise<string[]> {
  const libs = new Set<string>();
  for (const b of programs) {
    const r = await run('ldd', [b]);
    for (const line of r.stdout.split('\n')) {
      const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
      if (m?.[1]) libs.add(m[1]);
    }
  }
  return [...libs].sort();
}
