import { InfraError } from '../../util/errors.ts';
import type { WriteRef } from './states.ts';

/**
 * Delta debugging (Zeller and Hildebrandt's ddmin) over the writes a failing
 * power-loss state dropped: the smallest set whose loss still makes the
 * oracle fail, 1-minimal (dropping any one of them fewer makes it pass).
 * Each test asks the oracle about one candidate set; answers are cached by
 * set, so a test is never repeated.
 */
export type StillFails<T> = (subset: T[]) => Promise<boolean>;

export interface DdminResult<T> {
  minimal: T[];
  /** Oracle calls made (cache hits not counted). */
  tests: number;
  /** The test budget ran out: `minimal` still fails but may not be 1-minimal. */
  exhausted: boolean;
}

export class NotFailingError extends InfraError {
  constructor(what: string) {
    super(`cannot minimise: ${what} does not fail the oracle (a flaky oracle, or the wrong state)`);
  }
}

export async function ddmin<T>(
  items: readonly T[],
  stillFails: StillFails<T>,
  opts: { maxTests?: number } = {},
): Promise<DdminResult<T>> {
  const maxTests = opts.maxTests ?? 200;
  const position = new Map(items.map((x, i) => [x, i]));
  const cache = new Map<string, boolean>();
  let tests = 0;
  let exhausted = false;
  const test = async (subset: T[]): Promise<boolean> => {
    const key = subset.map((x) => position.get(x)).join(',');
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    if (tests >= maxTests) {
      exhausted = true;
      return false;
    }
    tests++;
    const r = await stillFails(subset);
    cache.set(key, r);
    return r;
  };

  let current = [...items];
  if (!(await test(current))) throw new NotFailingError(`the set of ${items.length}`);
  // The failure may need nothing dropped at all.
  if (current.length && (await test([]))) return { minimal: [], tests, exhausted };
  let n = 2;
  while (current.length >= 2) {
    const chunks = split(current, n);
    let reduced = false;
    for (const c of chunks) {
      if (await test(c)) {
        current = c;
        n = 2;
        reduced = true;
        break;
      }
    }
    if (!reduced && n > 2) {
      for (const c of chunks) {
        const complement = current.filter((x) => !c.includes(x));
        if (await test(complement)) {
          current = complement;
          n = Math.max(n - 1, 2);
          reduced = true;
          break;
        }
      }
    }
    if (!reduced) {
      if (n >= current.length || exhausted) break;
      n = Math.min(current.length, 2 * n);
    }
  }
  return { minimal: current, tests, exhausted };
}

function split<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  let start = 0;
  for (let i = 0; i < n; i++) {
    const end = start + Math.floor((xs.length - start) / (n - i));
    if (end > start) out.push(xs.slice(start, end));
    start = end;
  }
  return out;
}

export interface WritesThatMatter {
  /** The smallest set of lost writes that still fails. */
  dropped: WriteRef[];
  /** Writes that landed and are needed for the failure: losing one of them as well makes the state pass. */
  needed: WriteRef[];
  tests: number;
  exhausted: boolean;
}

/**
 * Shrink a failing power-loss state to the writes that matter: ddmin over
 * its dropped writes, then, among the epoch's writes that landed, those the
 * failure needs (e.g. the commit block whose presence makes a journal
 * replay use a journal block that never arrived). `fails(dropped)` builds
 * the state with exactly those writes of the epoch lost and runs the oracle.
 */
export async function minimizeDropped(
  dropped: readonly WriteRef[],
  epochWrites: readonly WriteRef[],
  fails: (dropped: WriteRef[]) => Promise<boolean>,
  opts: { maxTests?: number } = {},
): Promise<WritesThatMatter> {
  const maxTests = opts.maxTests ?? 200;
  const r = await ddmin(dropped, fails, { maxTests });
  let tests = r.tests;
  let exhausted = r.exhausted;
  const needed: WriteRef[] = [];
  const lost = new Set(r.minimal.map((w) => w.index));
  for (const w of epochWrites) {
    if (lost.has(w.index)) continue;
    if (tests >= maxTests) {
      exhausted = true;
      break;
    }
    tests++;
    if (!(await fails([...r.minimal, w].sort((a, b) => a.index - b.index)))) needed.push(w);
  }
  return { dropped: r.minimal, needed, tests, exhausted };
}
