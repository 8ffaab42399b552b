import { homedir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (harness/util/ is two levels below it). */
export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Built kernels, initramfs archives and base images are cached outside the
 * repository so that a fresh clone reuses them; QCRASH_CACHE overrides it
 * (tests point it at a temp dir to prove a run works without a cache).
 */
export function cacheRoot(): string {
  if (process.env.QCRASH_CACHE) return resolve(process.env.QCRASH_CACHE);
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(xdg, 'qcrash');
}

export function cacheDir(...parts: string[]): string {
  return join(cacheRoot(), ...parts);
}

export const scenariosDir = join(projectRoot, 'scenarios');
export const recipesDir = join(projectRoot, 'vm-images', 'recipes');
export const guestDir = join(projectRoot, 'vm-images', 'guest');
export const kernelConfigsDir = join(projectRoot, 'kernels', 'configs');
export const defaultResultsDir = join(projectRoot, 'results');
