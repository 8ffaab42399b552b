import { rm } from 'node:fs/promises';
import { closeSync, existsSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { InfraError, errorMessage } from '../../util/errors.ts';
import { readFullySync } from '../../util/fd-io.ts';
import { readUndoFile, undoFileRanges, type UndoFile } from '../../image/undo-file.ts';
import { identityAfter, type SectorChange } from './digest.ts';
import type { LogEntry, WriteLog } from './format.ts';
import { ReplayCursor, forkImage } from './replay.ts';
import type { PlannedState, WriteRef } from './states.ts';

/**
 * Crash-state images made from one pass over the log, two ways.
 *
 * `copy` (the default): the cursor advances to each state's base in log
 * order, the state is forked (a sparse copy of the working image, its
 * surviving epoch writes applied on the copy) and handed to `check`; up to
 * `jobs` checks run while the cursor moves on. Each image is deleted when
 * its check settles, unless `keep` says otherwise.
 *
 * `in-place`: no copy per state. Each job advances its own working image
 * along the log; a state's writes are applied on it with the bytes they
 * replace saved, the check runs on the working image itself, and then
 * everything is put back: what e2fsck changed from its undo file, as
 * e2undo would (the check must pass `scope.undoFile()` to every program
 * that writes, as `e2fsck -z`),
 * the state's writes from the saved bytes. A copy costs time in proportion
 * to the image's allocated bytes (tens of MiB for an image full of files);
 * an undo file only what the check wrote. Kernel recovery (a VM writing
 * the image) needs `copy`.
 */
export type ForkMode = 'copy' | 'in-place';

export interface MaterializeOptions {
  /** Where the working image(s) and the state images go (a TempDir's path). */
  workDir: string;
  /** Checks in parallel. Default 1. */
  jobs?: number;
  fork?: ForkMode;
  /** Keep the state image (e.g. for a failing state): with copy, the image as the check left it; in place, a copy of the state once the check's writes are undone. */
  keep?: (state: PlannedState, result: unknown) => boolean;
  /** The log digest's hash of a base sector it knows (LogDigest.knownBaseSectorHash): in place, it gives each check CheckScope.identity. */
  knownBaseSectorHash?: (sector: number) => bigint | undefined;
}

/** What a check may need from the way its image was made. */
export interface CheckScope {
  /**
   * In-place only: a fresh undo file for one program that writes the image
   * (`e2fsck -z FILE`); undone in reverse order after the check. Undefined
   * with `copy`, where the image is the check's own.
   */
  undoFile(): string | undefined;
  /** Milliseconds spent making the state before its check began (advancing the working image, applying the state's writes, or forking a copy). */
  readonly materialiseMs: number;
  /**
   * In place only: which byte ranges of the image hold the base's bytes as
   * of now, the writes of the programs given undo files so far included
   * (read from those files). True means nothing wrote there since the base
   * was copied; false, something may have. Undefined with `copy`, or when
   * an undo file cannot be read for it.
   */
  unchangedFromBase?(): ((offset: number, length: number) => boolean) | undefined;
  /**
   * In place only (with MaterializeOptions.knownBaseSectorHash): the identity
   * of the image's bytes as of now, as a state's key (hex; equal identities,
   * equal bytes): the state's key moved by what the programs given undo
   * files so far wrote. Two states whose images differ before e2fsck's
   * journal replay may be the same image after it. Undefined when an undo
   * file cannot be read for it.
   */
  identity?(): string | undefined;
}

export interface StateOutcome<T> {
  state: PlannedState;
  /** The check's result, or the error it threw. */
  result?: T;
  error?: string;
  /** Present when the image was kept. */
  image?: string;
  /** Milliseconds from fork start to check end. */
  ms: number;
  /** In place: why the working image had to be rebuilt from the base after this state's check (its verdict stands). */
  rebuilt?: string;
}

/** What one forEachState call shares among its jobs. */
interface StatePass<T> {
  log: WriteLog;
  basePath: string;
  opts: MaterializeOptions;
  check: (state: PlannedState, image: string, scope: CheckScope) => Promise<T>;
  outcomes: Map<PlannedState, StateOutcome<T>>;
  /** A fresh path for a state image. */
  nextImage: () => string;
}

export async function forEachState<T>(
  log: WriteLog,
  basePath: string,
  states: readonly PlannedState[],
  opts: MaterializeOptions,
  check: (state: PlannedState, image: string, scope: CheckScope) => Promise<T>,
): Promise<Array<StateOutcome<T>>> {
  const jobs = opts.jobs ?? 1;
  if (!Number.isInteger(jobs) || jobs < 1) throw new InfraError(`forEachState: jobs must be a positive integer, not ${jobs}`);
  const order = [...states].sort((a, b) => a.base - b.base);
  let n = 0;
  const pass: StatePass<T> = {
    log,
    basePath,
    opts,
    check,
    outcomes: new Map(),
    nextImage: () => join(opts.workDir, `state-${n++}.img`),
  };
  if ((opts.fork ?? 'copy') === 'copy') await checkCopies(pass, order, jobs);
  else await checkInPlace(pass, order, jobs);
  // In the caller's order.
  return states.map((s) => pass.outcomes.get(s)!);
}

function applyOf(log: WriteLog, state: PlannedState): Array<{ entry: LogEntry; keepSectors?: number }> {
  return state.apply.map((a) => ({
    entry: log.entries[a.index]!,
    ...(a.keepSectors !== undefined ? { keepSectors: a.keepSectors } : {}),
  }));
}

/** Run the check; an error it throws is its outcome. */
async function runCheck<T>(
  pass: StatePass<T>,
  state: PlannedState,
  image: string,
  scope: CheckScope,
  started: number,
): Promise<StateOutcome<T>> {
  const out: StateOutcome<T> = { state, ms: 0 };
  try {
    out.result = await pass.check(state, image, scope);
  } catch (e) {
    out.error = errorMessage(e);
  }
  out.ms = performance.now() - started;
  return out;
}

/** Copy: one cursor forks an image per state in base order; up to `jobs` checks run on their copies while it moves on. */
async function checkCopies<T>(pass: StatePass<T>, order: readonly PlannedState[], jobs: number): Promise<void> {
  using cursor = await ReplayCursor.create(pass.log, pass.basePath, join(pass.opts.workDir, 'work.img'));
  const running = new Set<Promise<void>>();
  for (const state of order) {
    while (running.size >= jobs) await Promise.race(running);
    await cursor.advanceTo(state.base);
    const image = pass.nextImage();
    const started = performance.now();
    await cursor.fork(image, applyOf(pass.log, state));
    const scope: CheckScope = { undoFile: () => undefined, materialiseMs: performance.now() - started };
    const p = (async () => {
      const out = await runCheck(pass, state, image, scope, started);
      if (pass.opts.keep?.(state, out.result ?? out.error)) out.image = image;
      else await rm(image, { force: true });
      pass.outcomes.set(state, out);
    })();
    running.add(p);
    void p.finally(() => running.delete(p));
  }
  await Promise.all(running);
}

/** In place: each job takes the next state in base order, so its own cursor only moves forward. */
async function checkInPlace<T>(pass: StatePass<T>, order: readonly PlannedState[], jobs: number): Promise<void> {
  const queue = { next: 0 };
  await Promise.all(
    Array.from({ length: Math.min(jobs, Math.max(1, order.length)) }, (_, j) => inPlaceJob(pass, order, queue, j)),
  );
}

async function inPlaceJob<T>(
  pass: StatePass<T>,
  order: readonly PlannedState[],
  queue: { next: number },
  j: number,
): Promise<void> {
  let cursor = await ReplayCursor.create(pass.log, pass.basePath, join(pass.opts.workDir, `work-${j}.img`));
  try {
    while (queue.next < order.length) cursor = await checkOneInPlace(pass, cursor, order[queue.next++]!, j);
  } finally {
    cursor.close();
  }
}

/**
 * Check one state on job `j`'s working image, then put the image back to the
 * state's base. Returns the cursor to go on with: a new one when what the
 * check wrote could not be undone and the working image was rebuilt.
 */
async function checkOneInPlace<T>(
  pass: StatePass<T>,
  cursor: ReplayCursor,
  state: PlannedState,
  j: number,
): Promise<ReplayCursor> {
  const started = performance.now();
  await cursor.advanceTo(state.base);
  const saved = cursor.applySaved(applyOf(pass.log, state));
  const undoFiles = new UndoFiles(join(pass.opts.workDir, `undo-${j}-`));
  const known = pass.opts.knownBaseSectorHash;
  const scope: CheckScope = {
    undoFile: () => undoFiles.next(),
    materialiseMs: performance.now() - started,
    unchangedFromBase: () => unchangedFromBase(cursor, undoFiles.paths),
    ...(known ? { identity: () => identityNow(state, cursor.workPath, undoFiles, pass.log.sectorSize, known) } : {}),
  };
  const out = await runCheck(pass, state, cursor.workPath, scope, started);
  const undoFailure = undoCheckWrites(cursor, undoFiles);
  const undone = undoFailure === undefined;
  if (!undone) {
    // An e2fsck killed mid-run leaves an unfinished undo file: rebuild this
    // job's working image from the base, one replay from entry 0, rather
    // than check the log's later states on a wrong image or not at all.
    // The state's own verdict stands: its check read the image before this.
    out.rebuilt = `what its check wrote could not be undone (${undoFailure}); the working image was rebuilt from the base`;
    cursor.close();
    cursor = await ReplayCursor.create(pass.log, pass.basePath, cursor.workPath);
    await cursor.advanceTo(state.base);
  }
  // Undone, the working image is the state again: what a kept image should be.
  if (pass.opts.keep?.(state, out.result ?? out.error)) {
    out.image = pass.nextImage();
    // Rebuilt, it is at the state's base without the state's own writes: those go on the copy.
    if (undone) await forkImage(cursor.workPath, out.image);
    else await cursor.fork(out.image, applyOf(pass.log, state));
  }
  if (undone) cursor.restore(saved);
  pass.outcomes.set(state, out);
  return cursor;
}

/** CheckScope.unchangedFromBase on a working image: what the cursor wrote and what the undo files so far say their programs wrote, marked as written. */
function unchangedFromBase(
  cursor: ReplayCursor,
  undoFiles: readonly string[],
): ((offset: number, length: number) => boolean) | undefined {
  for (const f of undoFiles) {
    const ranges = undoFileRanges(f);
    if (!ranges) return undefined;
    for (const [offset, length] of ranges) cursor.written.mark(offset, length);
  }
  const written = cursor.written;
  return (offset, length) => written.clean(offset, length);
}

/** One in-place check's undo files, in the order given out; each read (and verified) once, when first asked for after its program ended. */
class UndoFiles {
  readonly paths: string[] = [];
  private readonly read = new Map<string, UndoFile>();

  constructor(private readonly prefix: string) {}

  next(): string {
    const f = `${this.prefix}${this.paths.length}`;
    this.paths.push(f);
    return f;
  }

  /** The undo file's content (throws UndoFileError when it does not verify). */
  content(f: string): UndoFile {
    let u = this.read.get(f);
    if (!u) this.read.set(f, (u = readUndoFile(f)));
    return u;
  }
}

/**
 * CheckScope.identity in place: the state's key moved by each sector the
 * programs rewrote, its bytes before from the first undo file that holds it
 * and its bytes now read from the image. Undefined when an undo file does
 * not verify (what was written is then not known).
 */
function identityNow(
  state: PlannedState,
  image: string,
  undoFiles: UndoFiles,
  sectorSize: number,
  known: (sector: number) => bigint | undefined,
): string | undefined {
  // By sector: its bytes before, from the first undo file that holds it, and now.
  const rewritten = new Map<number, SectorChange>();
  const fd = openSync(image, 'r');
  try {
    for (const f of undoFiles.paths) {
      // Never opened: its program wrote nothing.
      if (!existsSync(f)) continue;
      let undo: UndoFile;
      try {
        undo = undoFiles.content(f);
      } catch {
        return undefined;
      }
      for (const x of undo.extents) {
        // The image's bytes there now, in one read per extent.
        const offset = undo.fsOffset + x.fsBlock * undo.fsBlockSize;
        const now = Buffer.alloc(x.bytes.length);
        readFullySync(fd, now, offset);
        for (let i = 0; (i + 1) * sectorSize <= x.bytes.length; i++) {
          const sector = offset / sectorSize + i;
          if (rewritten.has(sector)) continue;
          const at = (b: Buffer) => b.subarray(i * sectorSize, (i + 1) * sectorSize);
          rewritten.set(sector, { sector, before: at(x.bytes), after: at(now) });
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  // A sector written with the bytes it held does not move the identity: most of a block the replay rewrote.
  const changes = [...rewritten.values()].filter((c) => !c.before.equals(c.after));
  return identityAfter(BigInt(`0x${state.key}`), changes, known)
    .toString(16)
    .padStart(32, '0');
}

/** Put back what the check wrote, newest undo file first; the error message if that cannot be done. The undo files are removed. */
function undoCheckWrites(cursor: ReplayCursor, undoFiles: UndoFiles): string | undefined {
  try {
    for (const f of [...undoFiles.paths].reverse()) {
      // A program that never opened its undo file wrote nothing. (Synchronous
      // here and below: a few calls on a tmpfs file, every state, cost less
      // than their trips through libuv's thread pool.)
      if (!existsSync(f)) continue;
      // Read and verified whole before a byte is written (undo-file.ts): in this process, not an e2undo per state.
      cursor.putBack(undoFiles.content(f));
    }
    return undefined;
  } catch (e) {
    return errorMessage(e);
  } finally {
    for (const f of undoFiles.paths) rmSync(f, { force: true });
  }
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

  static async create(
    log: WriteLog,
    basePath: string,
    base: number,
    epochWrites: readonly WriteRef[],
    workDir: string,
  ): Promise<EpochStates> {
    const cursor = await ReplayCursor.create(log, basePath, join(workDir, 'epoch-work.img'));
    await cursor.advanceTo(base);
    return new EpochStates(log, cursor, workDir, epochWrites);
  }

  /** Fork a state with exactly `dropped` of the epoch's writes lost; the caller removes the image. */
  async image(dropped: readonly WriteRef[]): Promise<string> {
    const lost = new Set(dropped.map((d) => d.index));
    for (const d of dropped)
      if (!this.epochWrites.some((w) => w.index === d.index))
        throw new InfraError(`write ${d.id} (entry ${d.index}) is not in this epoch`);
    const dest = join(this.workDir, `epoch-state-${this.n++}.img`);
    await this.cursor.fork(
      dest,
      this.epochWrites.filter((w) => !lost.has(w.index)).map((w) => ({ entry: this.log.entries[w.index]! })),
    );
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
