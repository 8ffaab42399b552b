import { openSync, closeSync, fsyncSync } from 'node:fs';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { createCaseDisk } from '../../image/disk.ts';
import { InfraError } from '../../util/errors.ts';
import { readFullySync, writeFullySync } from '../../util/fd-io.ts';
import { applyUndo, type UndoFile } from '../../image/undo-file.ts';
import { entryKind, type LogEntry, type WriteLog } from './format.ts';

/**
 * Putting logged writes onto an image. The I/O is synchronous pread/pwrite
 * on purpose: a replay is thousands of small writes into the page cache,
 * where a syscall costs microseconds and a trip through libuv's thread pool
 * several times that. Runs yield to the event loop between chunks so that
 * checks running in parallel keep being served.
 */

/** Bytes of the working image a temporary write replaced. */
export interface SavedBytes {
  offset: number;
  bytes: Buffer;
}

/** One write to apply; `keepSectors` applies only its first sectors (a torn write). */
export interface ApplyWrite {
  entry: LogEntry;
  keepSectors?: number;
}

/** Reads of the log are batched up to this many bytes. */
const chunkBytes = 8 << 20;

/**
 * Chunk buffers, reused across replays: a fresh 8 MiB buffer per chunk
 * left hundreds of MiB for the collector on a long log, and the process's
 * size is what each later spawn (an e2fsck per check) pays to fork.
 */
const freeChunks: Buffer[] = [];
function takeChunk(min: number): Buffer {
  if (min > chunkBytes) return Buffer.allocUnsafe(min);
  return freeChunks.pop() ?? Buffer.allocUnsafe(chunkBytes);
}
function giveChunk(b: Buffer): void {
  // At most a few: one per replay running at once is all that is ever reused.
  if (b.length === chunkBytes && freeChunks.length < 4) freeChunks.push(b);
}
const zeroChunk = Buffer.alloc(1 << 20);

function readAll(fd: number, b: Buffer, position: number, what: string): void {
  const got = readFullySync(fd, b, position);
  if (got < b.length) throw new InfraError(`${what}: unexpected end of file at ${position + got}`);
}

function zeroRange(fd: number, position: number, length: number): void {
  for (let off = 0; off < length; off += zeroChunk.length) {
    writeFullySync(fd, zeroChunk.subarray(0, Math.min(zeroChunk.length, length - off)), position + off);
  }
}

/**
 * What one entry does to the disk, given its data. A discard is replayed as
 * zeros (what QEMU's raw file does when it punches the hole); flushes and
 * marks change nothing.
 */
function applyOne(
  fd: number,
  log: WriteLog,
  e: LogEntry,
  data: Buffer | undefined,
  keepSectors?: number,
  written?: WrittenMap,
): void {
  const kind = entryKind(e);
  const at = e.sector * log.sectorSize;
  if (kind === 'write') {
    const bytes = keepSectors === undefined ? e.dataBytes : Math.min(e.dataBytes, keepSectors * log.sectorSize);
    writeFullySync(fd, data!.subarray(0, bytes), at);
    written?.mark(at, bytes);
  } else if (kind === 'discard') {
    zeroRange(fd, at, e.nrSectors * log.sectorSize);
    written?.mark(at, e.nrSectors * log.sectorSize);
  }
}

/**
 * Which parts of a working image anything has written since it was copied
 * from the base, in 1 KiB units (the smallest ext4 block): never cleared,
 * so a part not marked holds the base's bytes (a part marked may too, after
 * a restore). The content oracle reads only marked parts to tell a file
 * left as on the base from one that changed (debugfs.ts readEntryState's
 * `base.unchanged`).
 */
class WrittenMap {
  static readonly unit = 1024;
  private bits = new Uint8Array(0);

  mark(offset: number, length: number): void {
    if (length <= 0) return;
    const first = Math.floor(offset / WrittenMap.unit);
    const last = Math.floor((offset + length - 1) / WrittenMap.unit);
    if (last >= this.bits.length) {
      const grown = new Uint8Array(Math.max(last + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    this.bits.fill(1, first, last + 1);
  }

  /** Nothing in [offset, offset + length) was written since the base. */
  clean(offset: number, length: number): boolean {
    if (length <= 0) return true;
    const first = Math.floor(offset / WrittenMap.unit);
    const last = Math.min(Math.floor((offset + length - 1) / WrittenMap.unit), this.bits.length - 1);
    for (let i = first; i <= last; i++) if (this.bits[i]) return false;
    return true;
  }
}

/** Open a log's file for synchronous reads (the WriteLog's own handle is async). */
function openLog(log: WriteLog): number {
  return openSync(log.path, 'r');
}

/**
 * Apply entries [from, to) of the log, in order, to the image open as `fd`:
 * the log is read sequentially in chunks of up to 8 MiB, each holding whole entries.
 */
async function applyRange(log: WriteLog, fd: number, from: number, to: number, written?: WrittenMap): Promise<void> {
  if (from >= to) return;
  const logFd = openLog(log);
  try {
    let i = from;
    while (i < to) {
      const first = log.entries[i]!;
      let j = i;
      let end = first.dataOffset + first.dataBytes;
      while (j + 1 < to && log.entries[j + 1]!.dataOffset + log.entries[j + 1]!.dataBytes - first.offset <= chunkBytes) {
        j++;
        end = log.entries[j]!.dataOffset + log.entries[j]!.dataBytes;
      }
      const chunk = takeChunk(end - first.offset);
      try {
        const buf = chunk.subarray(0, end - first.offset);
        readAll(logFd, buf, first.offset, log.path);
        for (let k = i; k <= j; k++) {
          const e = log.entries[k]!;
          const data = e.dataBytes
            ? buf.subarray(e.dataOffset - first.offset, e.dataOffset - first.offset + e.dataBytes)
            : undefined;
          applyOne(fd, log, e, data, undefined, written);
        }
      } finally {
        giveChunk(chunk);
      }
      i = j + 1;
      await yieldToLoop();
    }
  } finally {
    closeSync(logFd);
  }
}

/** Apply chosen writes (any subset, log order as given) to the image open as `fd`. */
function applyWrites(log: WriteLog, fd: number, writes: readonly ApplyWrite[], written?: WrittenMap): void {
  if (!writes.length) return;
  const logFd = openLog(log);
  try {
    for (const w of writes) {
      let data: Buffer | undefined;
      if (w.entry.dataBytes) {
        data = Buffer.allocUnsafe(w.entry.dataBytes);
        readAll(logFd, data, w.entry.dataOffset, log.path);
      }
      applyOne(fd, log, w.entry, data, w.keepSectors, written);
    }
  } finally {
    closeSync(logFd);
  }
}

/** A sparse copy (or reflink) of `src` at `dest`: the same copy a case disk is. */
export async function forkImage(src: string, dest: string): Promise<void> {
  await createCaseDisk(src, dest, 'raw');
}

/** Copy the base and replay entries [0, count) onto the copy: one state the way fstests' replay-log --limit makes it. */
export async function replayPrefix(log: WriteLog, basePath: string, dest: string, count: number): Promise<void> {
  await forkImage(basePath, dest);
  const fd = openSync(dest, 'r+');
  try {
    await applyRange(log, fd, 0, count);
  } finally {
    closeSync(fd);
  }
}

/**
 * One working image advanced along the log, never rewound: `advanceTo(p)`
 * applies only the entries since the last position, and `fork(dest)` copies
 * the image as it stands (the state at the current position), optionally
 * applying chosen writes on the copy (a power-loss state: the epoch's writes
 * minus the dropped ones). Every state costs one copy plus its own writes,
 * and the whole log is replayed once.
 */
export class ReplayCursor implements Disposable {
  private fd: number | undefined;
  private pos = 0;
  /** What has been written on the working image since it was the base's copy (by the replay, a state's writes, or a program's, as told). */
  readonly written = new WrittenMap();

  private constructor(
    readonly log: WriteLog,
    readonly workPath: string,
  ) {}

  /** Copy the base to `workPath` (sparse) and open it at position 0. */
  static async create(log: WriteLog, basePath: string, workPath: string): Promise<ReplayCursor> {
    await forkImage(basePath, workPath);
    const c = new ReplayCursor(log, workPath);
    c.fd = openSync(workPath, 'r+');
    return c;
  }

  /** Entries [0, position) are on the working image. */
  get position(): number {
    return this.pos;
  }

  async advanceTo(position: number): Promise<void> {
    if (this.fd === undefined) throw new InfraError('replay cursor is closed');
    if (position < this.pos)
      throw new InfraError(`replay cursor cannot go back from ${this.pos} to ${position}: states must come in log order`);
    if (position > this.log.entries.length)
      throw new InfraError(`replay position ${position} is past the log's ${this.log.entries.length} entries`);
    await applyRange(this.log, this.fd, this.pos, position, this.written);
    this.pos = position;
  }

  /** Copy the working image to `dest`, then apply `writes` on the copy only. */
  async fork(dest: string, writes: readonly ApplyWrite[] = []): Promise<void> {
    if (this.fd === undefined) throw new InfraError('replay cursor is closed');
    await forkImage(this.workPath, dest);
    if (!writes.length) return;
    const fd = openSync(dest, 'r+');
    try {
      applyWrites(this.log, fd, writes);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Apply `writes` on the working image itself and return what they
   * overwrote, for `restore`: a state checked in place (materialize.ts)
   * instead of on a copy.
   */
  applySaved(writes: readonly ApplyWrite[]): SavedBytes[] {
    if (this.fd === undefined) throw new InfraError('replay cursor is closed');
    const saved: SavedBytes[] = [];
    const ss = this.log.sectorSize;
    for (const w of writes) {
      const kind = entryKind(w.entry);
      if (kind !== 'write' && kind !== 'discard') continue;
      const sectors = Math.min(w.entry.nrSectors, w.keepSectors ?? w.entry.nrSectors);
      // Zero-filled: past the image's end there is nothing to save.
      const before = Buffer.alloc(sectors * ss);
      readFullySync(this.fd, before, w.entry.sector * ss);
      saved.push({ offset: w.entry.sector * ss, bytes: before });
      applyWrites(this.log, this.fd, [w], this.written);
    }
    return saved;
  }

  /** Put back what applySaved overwrote (latest first, so overlapping writes unwind right). */
  restore(saved: readonly SavedBytes[]): void {
    if (this.fd === undefined) throw new InfraError('replay cursor is closed');
    for (const s of [...saved].reverse()) writeFullySync(this.fd, s.bytes, s.offset);
  }

  /** Put back what a program that wrote the working image saved in its undo file (`e2fsck -z`). */
  putBack(undo: UndoFile): void {
    if (this.fd === undefined) throw new InfraError('replay cursor is closed');
    applyUndo(undo, this.fd);
  }

  /** Write the working image's page cache out (only needed before handing the file to another host). */
  sync(): void {
    if (this.fd !== undefined) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
