import { sha256 } from '../util/hash.ts';

/**
 * A fraction in [0, 1) from the host-side case seed. Randomness must come
 * from the host: a VM restored from a snapshot resumes with the same guest
 * RNG state every time.
 */
export function seededFraction(seed: number, salt: string): number {
  return parseInt(sha256(`${seed}/${salt}`).slice(0, 8), 16) / 0x100000000;
}
