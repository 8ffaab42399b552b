import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { InfraError, errorMessage } from '../../util/errors.ts';
import type { WriteLog } from './format.ts';
import { ReplayCursor } from './replay.ts';
import type { CrashState, WriteRef } from './states.ts';

/**
 * Crash-state images made from one pass over the log: the cursor advances
 * to each state's base in log order, the state is forked (a sparse copy of
 * the working image, its surviving epoch writes applied on the copy) and
 * handed to `check`; up to `jobs` checks run while the cursor moves on.
 * Each image is deleted when its check settles, unless `keep` says otherwise.
 */
export interface MaterializeOptions {
  /** Where the working image and the state images go (a TempDir's path). */
  workDir: string;
  /** Checks in parallel. Default 1. */
  jobs?: number;
  /** Keep the state image after the check (e.g. for a failing state). */
  keep?: (state: CrashState, result: unknown) => boolean;
}

export interface StateOutcome<T> {
  state: CrashState;
  /** The check's result, or the error it threw. */
  result?: T;
  error?: string;
  /** Present when the image was kept. */
  image?: string;
  /** Milliseconds from fork start to check end. */
  ms: number;
}

export async function forEachState<T>(
  log: WriteLog,
  basePath: string,
  states: readonly CrashState[],
  opts: MaterializeOptions,
  check: (state: CrashState, image: string) => Promise<T>,
): Promise<Array<StateOutcome<T>>> {
  const jobs = Math.max(1, opts.jobs ?? 1);
  const order = [...states].sort((a, b) => a.base - b.base);
  using cursor = await ReplayCursor.create(log, basePath, join(opts.workDir, 'work.img'));
  const outcomes: Array<StateOutcome<T>> = [];
  const running = new Set<Promise<void>>();
  let n = 0;
  for (const state of order) {
    while (running.size >= jobs) await Promise.race(running);
    await cursor.advanceTo(state.base);
    const image = join(opts.workDir, `state-${n++}.img`);
    const started = performance.now();
    await cursor.fork(image, state.apply.map((a) => ({ entry: log.entries[a.index]!, ...(a.keepSectors !== undefined ? { keepSectors: a.keepSectors } : {}) })));
    const p = (async () => {
      const out: StateOutcome<T> = { state, ms: 0 };
      try {
        out.result = await check(state, image);
      } catch (e) {
        out.error = errorMessage(e);
      }
      out.ms = performance.now() - started;
      if (opts.keep?.(state, out.result ?? out.error)) out.image = image;
      else await rm(image, { force: true });
      outcomes.push(out);
    })();
    running.add(p);
    void p.finally(() => running.delete(p));
  }
  await Promise.all(running);
  // In the caller's order.
  const byState = new Map(outcomes.map((o) => [o.state, o]));
  return states.map((s) => byState.get(s)!);
}

/**
 * Images of one epoch with chosen writes lost, for minimisation: the working
 * image stays at the epoch's base, and each call forks it and applies the
 * epoch's writes minus `dropped`.
 */
export class EpochStates implements AsyncDisposable {
  private n = 0;
  private constructor(
    private readonly log: WriteLog,
    private readonly cursor: ReplayCursor,
    private readonly workDir: string,
    readonly epochWrites: readonly WriteRef[],
  ) {}

  static async create(log: WriteLog, basePath: string, base: number, epochWrites: readonly WriteRef[], workDir: string): Promise<EpochStates> {
    const cursor = await ReplayCursor.create(log, basePath, join(workDir, 'epoch-work.img'));
    await cursor.advanceTo(base);
    return new EpochStates(log, cursor, workDir, epochWrites);
  }

  /** Fork a state with exactly `dropped` of the epoch's writes lost; the caller removes the image. */
  async image(dropped: readonly WriteRef[]): Promise<string> {
    const lost = new Set(dropped.map((d) => d.index));
    for (const d of dropped) if (!this.epochWrites.some((w) => w.index === d.index)) throw new InfraError(`write ${d.id} (entry ${d.index}) is not in this epoch`);
    const dest = join(this.workDir, `epoch-state-${this.n++}.img`);
    await this.cursor.fork(dest, this.epochWrites.filter((w) => !lost.has(w.index)).map((w) => ({ entry: this.log.entries[w.index]! })));
    return dest;
  }

  /** The oracle over dropped sets that minimizeDropped wants: build the image, run `fails`, remove it. */
  oracle(fails: (image: string, dropped: WriteRef[]) => Promise<boolean>): (dropped: WriteRef[]) => Promise<boolean> {
    return async (dropped) => {
      const image = await this.image(dropped);
      try {
        return await fails(image, dropped);
      } finally {
        await rm(image, { force: true });
      }
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.cursor.close();
    await rm(join(this.workDir, 'epoch-work.img'), { force: true });
  }
}
