import { open, type FileHandle } from 'node:fs/promises';
import { InfraError } from '../../util/errors.ts';

/**
 * The dm-log-writes on-disk format, as QEMU's blklogwrites driver writes it
 * (block/blklogwrites.c, format copied from Linux drivers/md/dm-log-writes.c;
 * fstests reads it in src/log-writes/log-writes.c). All fields little-endian.
 *
 *   sector 0            superblock: magic u64, version u64, nr_entries u64, sectorsize u32, zero padding
 *   then per request    one header sector: sector u64, nr_sectors u64, flags u64, data_len u64, zero padding
 *                       followed by nr_sectors sectors of data (none for a flush or a discard)
 *
 * Sectors are the log's `sectorsize` (qcrash records with 512). A write's
 * header has data_len 0; only a MARK carries data_len (its text inside the
 * header sector). QEMU logs a request after its data write completed and
 * before the guest sees the completion, so entries are in completion order.
 */
export const WRITE_LOG_MAGIC = 0x6a736677736872n;
export const WRITE_LOG_VERSION = 1n;
export const LogFlag = {
  flush: 1,
  fua: 2,
  discard: 4,
  mark: 8,
  /** Linux dm-log-writes only (REQ_META); QEMU never sets it. */
  metadata: 16,
} as const;
const knownFlags = 0x1f;
const headerBytes = 32;
/** A data-carrying entry longer than this is not a request any guest sends: the header is garbage. */
const maxDataBytes = 256 * 1024 * 1024;

export interface LogEntry {
  /** Position in the log, 0-based. */
  index: number;
  /** First sector written, in the log's sector size. */
  sector: number;
  nrSectors: number;
  flags: number;
  /** MARK payload length (0 for everything QEMU writes). */
  dataLen: number;
  /** File offset of the entry's header sector. */
  offset: number;
  /** File offset of the entry's data (the sector after the header). */
  dataOffset: number;
  /** Bytes of data the entry holds in the log: nrSectors * sectorSize for a write, else 0. */
  dataBytes: number;
}

export type LogEntryKind = 'write' | 'flush' | 'discard' | 'mark';

/**
 * What an entry does to the disk. A FLUSH entry from QEMU carries no data;
 * should one carry data (Linux dm-log-writes logs a REQ_PREFLUSH bio with
 * its payload), the flush counts and the data is a write after it.
 */
export function entryKind(e: LogEntry): LogEntryKind {
  if (e.flags & LogFlag.mark) return 'mark';
  if (e.flags & LogFlag.discard) return 'discard';
  if (e.flags & LogFlag.flush && e.nrSectors === 0) return 'flush';
  return e.nrSectors > 0 ? 'write' : 'flush';
}

export function isFlush(e: LogEntry): boolean {
  return (e.flags & LogFlag.flush) !== 0;
}

export function isFua(e: LogEntry): boolean {
  return (e.flags & LogFlag.fua) !== 0 && e.nrSectors > 0;
}

export function isWrite(e: LogEntry): boolean {
  return entryKind(e) === 'write';
}

/** The log is not in the dm-log-writes format, or is damaged before its end. Keeps where and what was found. */
export class WriteLogFormatError extends InfraError {
  constructor(
    readonly path: string,
    readonly offset: number,
    readonly found: string,
    readonly expected: string,
    readonly entryIndex?: number,
  ) {
    super(
      `write log ${path}: ${entryIndex !== undefined ? `entry ${entryIndex} at ` : ''}offset ${offset}: found ${found}, expected ${expected}. ` +
        'The log is not a dm-log-writes log or was damaged after recording: record the workload again.',
    );
  }
}

/** How a scan ended short of a clean end of file. */
export interface TornTail {
  /** Offset of the entry that could not be read whole. */
  offset: number;
  /** The index that entry would have had. */
  index: number;
  reason: string;
}

export interface OpenOptions {
  /** Sector size to assume when the superblock was never written (a kill right after the first write). Default 512. */
  fallbackSectorSize?: number;
}

/**
 * An opened write log: every entry indexed with its file offsets by one
 * sequential scan of the headers; data is read only when asked for
 * (`readData`), so a log of any size costs memory per entry, not per byte.
 *
 * A log cut short by a kill may end inside an entry (a torn tail) or in a
 * header slot reserved but never written: that is the end (`tornTail`).
 * A damaged entry before the superblock's entry count, unknown flags, a
 * header that is not zero-padded, or a bad magic are WriteLogFormatErrors.
 */
export class WriteLog implements AsyncDisposable {
  readonly sectorSize: number;
  /** nr_entries of the superblock: entries known logged when it was last rewritten (blklogwrites: on flush or every update interval). */
  readonly superblockEntries: number;
  /** The superblock sector was blank (never written): sectorSize is the fallback. */
  readonly superblockMissing: boolean;
  readonly entries: readonly LogEntry[];
  readonly fileSize: number;
  /** Where and why the scan stopped short of a clean end of file. */
  readonly torn: TornTail | undefined;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    s: ScanResult,
  ) {
    this.sectorSize = s.sectorSize;
    this.superblockEntries = s.superblockEntries;
    this.superblockMissing = s.superblockMissing;
    this.entries = s.entries;
    this.fileSize = s.fileSize;
    this.torn = s.torn;
  }

  get tornTail(): boolean {
    return this.torn !== undefined;
  }

  /** Entries with the FLUSH flag. */
  get flushCount(): number {
    return this.entries.filter(isFlush).length;
  }

  /** Bytes of the log that hold whole entries (superblock included). */
  get validBytes(): number {
    const last = this.entries.at(-1);
    return last ? last.dataOffset + last.dataBytes : this.sectorSize;
  }

  static async open(path: string, opts: OpenOptions = {}): Promise<WriteLog> {
    const fh = await open(path, 'r').catch((e: Error) => {
      throw new InfraError(`cannot open the write log ${path}: ${e.message}`);
    });
    try {
      return new WriteLog(path, fh, await scan(path, fh, opts));
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** The entry's data: the bytes a write put on the disk (a MARK's text for a mark, empty otherwise). */
  async readData(e: LogEntry): Promise<Buffer> {
    if (e.flags & LogFlag.mark) {
      const b = Buffer.alloc(e.dataLen);
      await this.readExactly(b, e.offset + headerBytes);
      return b;
    }
    const b = Buffer.alloc(e.dataBytes);
    if (e.dataBytes) await this.readExactly(b, e.dataOffset);
    return b;
  }

  /** Read a byte range of the log file (used by a replay that streams whole runs of entries). */
  async readRange(offset: number, length: number): Promise<Buffer> {
    const b = Buffer.alloc(length);
    await this.readExactly(b, offset);
    return b;
  }

  private async readExactly(b: Buffer, offset: number): Promise<void> {
    let done = 0;
    while (done < b.length) {
      const { bytesRead } = await this.fh.read(b, done, b.length - done, offset + done);
      if (bytesRead === 0)
        throw new InfraError(
          `write log ${this.path}: unexpected end of file at ${offset + done} (was the file truncated after it was opened?)`,
        );
      done += bytesRead;
    }
  }

  /** How many entries lie wholly within the first `bytes` bytes of the log: the log position at which the file had that size. */
  positionAtBytes(bytes: number): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const e = this.entries[mid]!;
      if (e.dataOffset + e.dataBytes <= bytes) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Reads the log through a 1 MiB window: headers are found by one forward pass that skips the data. */
class Window {
  private buf = Buffer.alloc(0);
  private store = Buffer.alloc(0);
  private start = 0;
  constructor(
    private readonly fh: FileHandle,
    private readonly size = 1 << 20,
  ) {}

  async at(offset: number, length: number): Promise<Buffer> {
    if (offset >= this.start && offset + length <= this.start + this.buf.length) {
      return this.buf.subarray(offset - this.start, offset - this.start + length);
    }
    // One buffer for the whole scan, grown only for a header larger than the
    // window: a fresh 1 MiB per header made a log of big writes churn
    // hundreds of MiB, and a larger process makes every later spawn dearer.
    if (this.store.length < Math.max(this.size, length)) this.store = Buffer.allocUnsafe(Math.max(this.size, length));
    const b = this.store;
    const { bytesRead } = await this.fh.read(b, 0, b.length, offset);
    this.buf = b.subarray(0, bytesRead);
    this.start = offset;
    return this.buf.subarray(0, Math.min(length, bytesRead));
  }
}

function u64(b: Buffer, at: number, what: string, path: string, offset: number, index?: number): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new WriteLogFormatError(path, offset + at, `${what} 0x${v.toString(16)}`, `a ${what} below 2^53`, index);
  return Number(v);
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

interface ScanResult {
  sectorSize: number;
  superblockEntries: number;
  superblockMissing: boolean;
  entries: LogEntry[];
  fileSize: number;
  torn: TornTail | undefined;
}

async function scan(path: string, fh: FileHandle, opts: OpenOptions): Promise<ScanResult> {
  const fileSize = (await fh.stat()).size;
  const win = new Window(fh);
  const sb = await win.at(0, 512);
  if (fileSize === 0) {
    // blklogwrites writes nothing until the guest's first request: an empty log has no entries.
    return {
      sectorSize: opts.fallbackSectorSize ?? 512,
      superblockEntries: 0,
      superblockMissing: true,
      entries: [],
      fileSize: 0,
      torn: undefined,
    };
  }
  if (sb.length < 28) throw new WriteLogFormatError(path, 0, `${fileSize} bytes`, 'a superblock of at least 28 bytes');
  const head = logSuperblock(path, sb, opts);
  const { entries, torn } = await scanEntries(path, win, fileSize, head.sectorSize, head.superblockEntries);
  return { ...head, entries, fileSize, torn };
}

/** The log's superblock: sector size and entry count, or the fallback sector size when it is blank. */
function logSuperblock(
  path: string,
  sb: Buffer,
  opts: OpenOptions,
): Pick<ScanResult, 'sectorSize' | 'superblockEntries' | 'superblockMissing'> {
  if (isZero(sb.subarray(0, 28))) {
    // Written after the first entry (blklogwrites rewrites it after the entry): a kill in between leaves it blank.
    return { sectorSize: opts.fallbackSectorSize ?? 512, superblockEntries: 0, superblockMissing: true };
  }
  const magic = sb.readBigUInt64LE(0);
  if (magic !== WRITE_LOG_MAGIC)
    throw new WriteLogFormatError(path, 0, `magic 0x${magic.toString(16)}`, `magic 0x${WRITE_LOG_MAGIC.toString(16)}`);
  const version = sb.readBigUInt64LE(8);
  if (version !== WRITE_LOG_VERSION) throw new WriteLogFormatError(path, 8, `version ${version}`, `version ${WRITE_LOG_VERSION}`);
  const superblockEntries = u64(sb, 16, 'entry count', path, 0);
  const sectorSize = sb.readUInt32LE(24);
  if (sectorSize < 512 || sectorSize >= 1 << 24 || (sectorSize & (sectorSize - 1)) !== 0) {
    throw new WriteLogFormatError(path, 24, `sector size ${sectorSize}`, 'a power of two from 512 to 8 MiB');
  }
  return { sectorSize, superblockEntries, superblockMissing: false };
}

/** Every whole entry after the superblock, up to the file's end or a torn tail (a cut or blank entry past the superblock's count). */
async function scanEntries(
  path: string,
  win: Window,
  fileSize: number,
  sectorSize: number,
  superEntries: number,
): Promise<{ entries: LogEntry[]; torn: TornTail | undefined }> {
  const entries: LogEntry[] = [];
  let offset = sectorSize;
  const tear = (reason: string) => ({ entries, torn: { offset, index: entries.length, reason } });
  while (offset < fileSize) {
    const index = entries.length;
    if (fileSize - offset < sectorSize) return tear(`the file ends ${fileSize - offset} bytes into the header sector`);
    const h = await win.at(offset, sectorSize);
    const sector = u64(h, 0, 'sector', path, offset, index);
    const nrSectors = u64(h, 8, 'sector count', path, offset, index);
    const flags = u64(h, 16, 'flags', path, offset, index);
    const dataLen = u64(h, 24, 'data length', path, offset, index);
    if (flags === 0 && nrSectors === 0 && dataLen === 0) {
      // A slot reserved for an entry whose write never landed (or was never made).
      if (index < superEntries) {
        throw new WriteLogFormatError(
          path,
          offset,
          'a blank entry header',
          `entry ${index} of the ${superEntries} the superblock counts`,
          index,
        );
      }
      return tear('blank entry header (reserved, never written)');
    }
    const dataBytes = checkedDataBytes(path, h, offset, index, { nrSectors, flags, dataLen }, sectorSize);
    if (offset + sectorSize + dataBytes > fileSize)
      return tear(`the file ends ${fileSize - offset - sectorSize} bytes into the entry's ${dataBytes} bytes of data`);
    entries.push({ index, sector, nrSectors, flags, dataLen, offset, dataOffset: offset + sectorSize, dataBytes });
    offset += sectorSize + dataBytes;
  }
  return { entries, torn: undefined };
}

/** An entry header's flags, mark length and padding checked; the bytes of data that follow it. */
function checkedDataBytes(
  path: string,
  h: Buffer,
  offset: number,
  index: number,
  e: { nrSectors: number; flags: number; dataLen: number },
  sectorSize: number,
): number {
  const { nrSectors, flags, dataLen } = e;
  if (flags & ~knownFlags)
    throw new WriteLogFormatError(
      path,
      offset + 16,
      `flags 0x${flags.toString(16)}`,
      `flags within 0x${knownFlags.toString(16)} (FLUSH|FUA|DISCARD|MARK|METADATA)`,
      index,
    );
  const isMark = (flags & LogFlag.mark) !== 0;
  if (!isMark && dataLen !== 0)
    throw new WriteLogFormatError(path, offset + 24, `data_len ${dataLen}`, 'data_len 0 on a non-MARK entry', index);
  if (isMark && dataLen > sectorSize - headerBytes)
    throw new WriteLogFormatError(path, offset + 24, `mark length ${dataLen}`, `at most ${sectorSize - headerBytes}`, index);
  if (!isZero(h.subarray(headerBytes + (isMark ? dataLen : 0)))) {
    throw new WriteLogFormatError(
      path,
      offset + headerBytes,
      'non-zero bytes after the entry header',
      'a zero-padded header sector',
      index,
    );
  }
  const carriesData = !(flags & LogFlag.discard) && !isMark;
  const dataBytes = carriesData ? nrSectors * sectorSize : 0;
  if (dataBytes > maxDataBytes)
    throw new WriteLogFormatError(
      path,
      offset + 8,
      `${nrSectors} sectors of data`,
      `at most ${maxDataBytes} bytes per entry`,
      index,
    );
  return dataBytes;
}

/** One entry to write into a log: what `writeWriteLog` takes. */
export interface NewLogEntry {
  sector: number;
  nrSectors: number;
  flags: number;
  /** nrSectors * sectorSize bytes for a write; absent for a flush or discard. */
  data?: Buffer;
}

/**
 * Write a log file in the same format (used to build logs with a planted
 * reordering from a real one, and by tests). The superblock counts every entry.
 */
export async function writeWriteLog(path: string, sectorSize: number, entries: Iterable<NewLogEntry>): Promise<void> {
  const fh = await open(path, 'w');
  try {
    let offset = sectorSize;
    let n = 0;
    for (const e of entries) {
      const header = Buffer.alloc(sectorSize);
      header.writeBigUInt64LE(BigInt(e.sector), 0);
      header.writeBigUInt64LE(BigInt(e.nrSectors), 8);
      header.writeBigUInt64LE(BigInt(e.flags), 16);
      const data = e.data ?? Buffer.alloc(0);
      const carriesData = !(e.flags & (LogFlag.discard | LogFlag.mark));
      if (carriesData && data.length !== e.nrSectors * sectorSize)
        throw new InfraError(`writeWriteLog: entry ${n} has ${data.length} bytes for ${e.nrSectors} sectors of ${sectorSize}`);
      await fh.write(header, 0, sectorSize, offset);
      offset += sectorSize;
      if (carriesData && data.length) {
        await fh.write(data, 0, data.length, offset);
        offset += data.length;
      }
      n++;
    }
    const sb = Buffer.alloc(sectorSize);
    sb.writeBigUInt64LE(WRITE_LOG_MAGIC, 0);
    sb.writeBigUInt64LE(WRITE_LOG_VERSION, 8);
    sb.writeBigUInt64LE(BigInt(n), 16);
    sb.writeUInt32LE(sectorSize, 24);
    await fh.write(sb, 0, sectorSize, 0);
  } finally {
    await fh.close();
  }
}
