import { readFile, rm } from 'node:fs/promises';
import { closeSync, createReadStream, fstatSync, openSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { CommandError, ConfigError } from '../util/errors.ts';
import { runSpawned } from './spawner.ts';
import { tool } from '../util/tools.ts';
import { sha256 } from '../util/hash.ts';
import { TempDir } from '../util/tempdir.ts';
import type { ManifestEntry, MappingKind } from './manifest.ts';
import { parseBlockMap, type BlockMap } from './block-map.ts';
import { readFullySync } from '../util/fd-io.ts';
import { AskDebugfsError, EXTENTS_FL, INLINE_DATA_FL, InodeReader, type StatFields } from './inode-reader.ts';

/** What `debugfs -R 'stat PATH'` says about an inode, the parts qcrash uses: the stat's fields, and what is derived from its map. */
export interface InodeStat extends Omit<StatFields, 'map'> {
  mapping: MappingKind;
  /** The raw "BLOCKS:"/"EXTENTS:" section, for reports. */
  map: string;
  /** Data blocks from the map (index blocks such as (IND) excluded), holes not counted. */
  dataBlocks: number;
  /** Map section mentions (IND)/(DIND)/(TIND). */
  levels: { ind: boolean; dind: boolean; tind: boolean };
}

/** Parse one inode's `stat` output (debugfs 1.47). */
export function parseDebugfsStat(text: string): InodeStat | undefined {
  const head = /Inode:\s*(\d+)\s+Type:\s*(\S+)\s+Mode:\s*\S+\s+Flags:\s*(0x[0-9a-f]+)/i.exec(text);
  if (!head) return undefined;
  const fast = /Fast link dest:\s*"(.*)"/.exec(text)?.[1];
  const mapMatch = /^(BLOCKS|EXTENTS):\s*\n?([\s\S]*?)(?:\n\s*\n|\n?$)/m.exec(text);
  return inodeStatOf({
    ino: Number(head[1]),
    type: head[2]!,
    flags: parseInt(head[3]!, 16),
    size: Number(/Size:\s*(\d+)/.exec(text)?.[1] ?? 0),
    links: Number(/Links:\s*(\d+)/.exec(text)?.[1] ?? 0),
    blockcount: Number(/Blockcount:\s*(\d+)/.exec(text)?.[1] ?? 0),
    ...(fast !== undefined ? { fastLinkTarget: fast } : {}),
    ...(mapMatch ? { map: { heading: mapMatch[1] as 'BLOCKS' | 'EXTENTS', body: mapMatch[2]! } } : {}),
  });
}

/** An InodeStat from a stat's fields: the mapping kind, the map as reports show it, its data blocks and levels. */
export function inodeStatOf(f: StatFields): InodeStat {
  const map = f.map ? `${f.map.heading}:\n${f.map.body.trim()}` : '';
  let mapping: MappingKind;
  if (f.flags & INLINE_DATA_FL) mapping = 'inline';
  else if (f.fastLinkTarget !== undefined) mapping = 'fast-symlink';
  else if (f.flags & EXTENTS_FL) mapping = 'extents';
  else mapping = f.blockcount === 0 && !f.map ? 'none' : 'blocks';
  return {
    ino: f.ino,
    type: f.type,
    flags: f.flags,
    size: f.size,
    links: f.links,
    blockcount: f.blockcount,
    mapping,
    map,
    dataBlocks: countDataBlocks(f.map?.body ?? ''),
    levels: { ind: /\(IND\)/.test(map), dind: /\(DIND\)/.test(map), tind: /\(TIND\)/.test(map) },
    ...(f.fastLinkTarget !== undefined ? { fastLinkTarget: f.fastLinkTarget } : {}),
  };
}

/** "(0-11):1234-1245, (IND):1300, (12-20):1301-1309" or "(ETB0):..., (0-99):..." -> data blocks. */
function countDataBlocks(map: string): number {
  let n = 0;
  for (const m of map.matchAll(/\((\d+)(?:-(\d+))?\)/g)) {
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    n += b - a + 1;
  }
  return n;
}

/**
 * Run many debugfs requests in one process (`-f -`, the commands on its
 * stdin: no command file, so no temp folder per state): one process per
 * file would dominate a check's time. Returns each command's output.
 */
export async function debugfsBatch(image: string, commands: string[], opts: { write?: boolean } = {}): Promise<string[]> {
  if (!commands.length) return [];
  const input = commands.join('\n') + '\n';
  let args = [...(opts.write ? ['-w'] : []), '-f', '-', image];
  let r = await runSpawned(await tool('debugfs'), args, { input });
  // A bitmap that does not match its checksum (a crash state, a failed
  // journal replay) makes debugfs refuse to open the filesystem, and every
  // command then answers "Filesystem not open": read it without the bitmaps
  // (-c, read-only) rather than see every file missing. The kernel mounts
  // such a filesystem and reads the files.
  if (!opts.write && !r.failed && bitmapsUnreadable(r.stdout + r.stderr)) {
    args = ['-c', ...args];
    r = await runSpawned(await tool('debugfs'), args, { input });
  }
  if (r.failed)
    throw new CommandError(
      `debugfs ${args.join(' ')} failed (${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`}):\n${(r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n')}`,
      r.argv,
      r.exitCode,
      r.stdout,
      r.stderr,
    );
  // debugfs echoes each command as "debugfs: CMD" before its output.
  const text = r.stdout;
  const parts = text.split(/^debugfs: /m).slice(1);
  return commands.map((_, i) => {
    const p = parts[i] ?? '';
    const nl = p.indexOf('\n');
    return nl >= 0 ? p.slice(nl + 1) : '';
  });
}

/** debugfs could not open the filesystem because its allocation bitmaps did not read (a checksum mismatch). */
export function bitmapsUnreadable(output: string): boolean {
  return /while reading allocation bitmaps/.test(output) && /Filesystem not open/.test(output);
}

/** `debugfs -R 'icheck B...'`: block -> owning inode (undefined for "<block not found>"). */
export function parseIcheck(text: string): Map<number, number | undefined> {
  const out = new Map<number, number | undefined>();
  for (const m of text.matchAll(/^(\d+)\s+(\d+|<block not found>)\s*$/gm))
    out.set(Number(m[1]), m[2]!.startsWith('<') ? undefined : Number(m[2]));
  return out;
}

/** `debugfs -R 'ncheck I...'`: inode -> first path (debugfs prints "//dir" for a directory under the root: normalised). */
export function parseNcheck(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const m of text.matchAll(/^(\d+)\s+(\/.*?)\s*$/gm))
    if (!out.has(Number(m[1]))) out.set(Number(m[1]), m[2]!.replace(/^\/\/+/, '/'));
  return out;
}

/**
 * A path as one debugfs argument. debugfs's command parser (libss) splits
 * on blanks and takes "..." as one word with "" for a quote inside, so any
 * name can be given except one with a newline (the command file is read a
 * line at a time). Plain paths are passed as they are.
 */
export function debugfsPath(p: string): string {
  if (!p.startsWith('/') || p.includes('\0')) throw new Error(`path not usable with debugfs: ${JSON.stringify(p)}`);
  if (/^\/[A-Za-z0-9._/+@:,=-]*$/.test(p)) return p;
  if (/[\n\r]/.test(p)) throw new UnaddressablePathError(p);
  return `"${p.replace(/"/g, '""')}"`;
}

/**
 * A name debugfs cannot be given (a newline in it): a file the user's
 * image, recipe or scenario names that qcrash cannot check, exit 2. The
 * caller says what to do about the file.
 */
export class UnaddressablePathError extends ConfigError {
  constructor(readonly path: string) {
    super(`path not usable with debugfs (it holds a newline): ${JSON.stringify(path)}`);
  }
}

/**
 * How the stats of `readEntryState` via 'map' were read since the process
 * began: images read in process (inode-reader.ts), and images debugfs read
 * because the reader would not, with the last reason. The bench prints them.
 */
export const statReads = { inProcess: 0, debugfs: 0, lastReason: '' };

/** Every path's stat read in this process, or undefined when the reader leaves the image to debugfs (AskDebugfsError). */
function statInProcess(fd: number, image: string, paths: string[]): Map<string, InodeStat | undefined> | undefined {
  try {
    const reader = InodeReader.open(fd, image);
    const stats = new Map(paths.map((p) => [p, statOf(reader.stat(p))]));
    statReads.inProcess++;
    return stats;
  } catch (e) {
    if (!(e instanceof AskDebugfsError)) throw e;
    statReads.debugfs++;
    statReads.lastReason = e.reason;
    return undefined;
  }
}

function statOf(f: StatFields | undefined): InodeStat | undefined {
  return f && inodeStatOf(f);
}

export async function statPaths(image: string, paths: string[]): Promise<Map<string, InodeStat | undefined>> {
  const outs = await debugfsBatch(
    image,
    paths.map((p) => `stat ${debugfsPath(p)}`),
  );
  return new Map(paths.map((p, i) => [p, parseDebugfsStat(outs[i]!)]));
}

export interface EntryState {
  path: string;
  exists: boolean;
  stat?: InodeStat;
  size?: number;
  sha256?: string;
  /** The file's bytes, for the paths asked for in `keepBytes`. */
  bytes?: Buffer;
}

export interface ReadEntryOptions {
  /** Paths whose bytes are returned (`EntryState.bytes`): with `via: 'map'` instead of a sha256, with `dump` beside it. */
  keepBytes?: ReadonlySet<string>;
  /**
   * With `via: 'map'`: the base image the image was made from and its
   * manifest entries by path. A regular file whose block map and size are
   * its manifest entry's, and whose bytes on those blocks are the base's
   * (compared, not hashed), gets the manifest's sha256: hashing would read
   * the same bytes. The manifest's sha256 is first checked once against the
   * base's bytes through that map; a file that fails either check is hashed.
   */
  base?: {
    path: string;
    entries: ReadonlyMap<string, ManifestEntry>;
    /** Byte ranges of the image known to hold the base's bytes (nothing wrote them since it was copied): not read to compare. */
    unchanged?: (offset: number, length: number) => boolean;
  };
  /**
   * How a regular file's bytes are read. `dump` (the default): debugfs dumps
   * every file (what manifests are made with). `map`: every path is stat'ed
   * (in process, see `statWith`), and the bytes are read straight from the
   * image through the block map the stat gives (data runs, holes and unwritten extents as
   * zeros, up to i_size): the content oracle's way, since dumping 15 MB
   * through debugfs took 170-250 ms per image here and reading them through
   * the map 20-40 ms. A file the map cannot serve (inline data, a map that
   * does not parse, a block beyond the image's end) is dumped by debugfs as
   * before. test/image/map-read.test.ts holds the two to the same bytes.
   */
  via?: 'dump' | 'map';
  /**
   * Expected sizes (a manifest's): paths are dumped in batches of at most
   * dumpBatchBytes. Without them every path goes into one debugfs run.
   */
  sizes?: ReadonlyMap<string, number>;
  /**
   * With `via: 'map'`: where the stats come from. By default the image is
   * read in this process (inode-reader.ts) and debugfs reads any image the
   * reader leaves to it; `debugfs` always asks debugfs (the tests compare).
   */
  statWith?: 'debugfs';
}

/**
 * How many bytes of dumped files one debugfs run may leave in the temp
 * folder before they are hashed and removed: a user's image can hold more
 * data than the temp folder has room for.
 */
const dumpBatchBytes = 256 << 20;

/**
 * Read files' current state from an image without mounting it: each debugfs
 * run stats and dumps a batch of paths (a run costs about 30 ms, so small
 * images take one), hashes are computed on the host as each dump is read
 * and the dumps removed batch by batch; or the stats only, with `via: 'map'`.
 */
export async function readEntryState(
  image: string,
  paths: string[],
  types?: Map<string, string>,
  opts: ReadEntryOptions = {},
): Promise<EntryState[]> {
  if (opts.via === 'map') return readEntryStateViaMap(image, paths, types, opts);
  await using tmp = await TempDir.create('dump');
  const byPath = new Map<string, EntryState>();
  for (const batch of dumpBatches(paths, opts.sizes)) {
    const dumps = new Map(batch.map((p, i) => [p, join(tmp.path, `f${i}`)]));
    const outs = await debugfsBatch(
      image,
      batch.flatMap((p) => [`stat ${debugfsPath(p)}`, `dump ${debugfsPath(p)} ${dumps.get(p)}`]),
    );
    for (const [i, p] of batch.entries()) {
      const st = parseDebugfsStat(outs[2 * i]!);
      if (!st) {
        byPath.set(p, { path: p, exists: false });
        continue;
      }
      // Only the regular files' dumps are read.
      const file = (types?.get(p) ?? st.type) === 'regular' ? dumps.get(p)! : undefined;
      const read = file ? await hashFile(file, opts.keepBytes?.has(p) ?? false) : undefined;
      byPath.set(p, {
        path: p,
        exists: true,
        stat: st,
        size: read ? read.size : st.size,
        ...(read ? { sha256: read.sha256 } : st.fastLinkTarget !== undefined ? { sha256: sha256(st.fastLinkTarget) } : {}),
        ...(read?.bytes ? { bytes: read.bytes } : {}),
      });
    }
    await Promise.all([...dumps.values()].map((f) => rm(f, { force: true })));
  }
  return paths.map((p) => byPath.get(p)!);
}

function* dumpBatches(paths: string[], sizes: ReadonlyMap<string, number> | undefined): Iterable<string[]> {
  if (!sizes) {
    yield paths;
    return;
  }
  let batch: string[] = [];
  let bytes = 0;
  for (const p of paths) {
    const n = sizes.get(p) ?? 0;
    if (batch.length && bytes + n > dumpBatchBytes) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(p);
    bytes += n;
  }
  if (batch.length) yield batch;
}

/** A dump's size and sha256, read in pieces (a file may be larger than memory should hold); its bytes only when asked. */
async function hashFile(file: string, keep: boolean): Promise<{ size: number; sha256: string; bytes?: Buffer } | undefined> {
  if (keep) {
    const bytes = await readFile(file).catch(() => undefined);
    return bytes && { size: bytes.length, sha256: sha256(bytes), bytes };
  }
  const h = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      h.update(chunk);
      size += chunk.length;
    }
  } catch {
    return undefined;
  }
  return { size, sha256: h.digest('hex') };
}

/** `readEntryState` with `via: 'map'`: stats from debugfs, bytes through the block map, debugfs dumps only what the map cannot serve. */
async function readEntryStateViaMap(
  image: string,
  paths: string[],
  types: Map<string, string> | undefined,
  opts: ReadEntryOptions,
): Promise<EntryState[]> {
  using base = opts.base ? BaseReader.open(opts.base.path, opts.base.unchanged) : undefined;
  // Synchronous open, reads and close: a state's few calls through libuv's thread pool cost more than the syscalls.
  const fd = openSync(image, 'r');
  const out: EntryState[] = [];
  const unserved: string[] = [];
  try {
    const stats = (opts.statWith === 'debugfs' ? undefined : statInProcess(fd, image, paths)) ?? (await statPaths(image, paths));
    const geometry = imageGeometry(fd);
    for (const p of paths) {
      const st = stats.get(p);
      if (!st) {
        out.push({ path: p, exists: false });
        continue;
      }
      const regular = (types?.get(p) ?? st.type) === 'regular';
      if (!regular) {
        out.push({
          path: p,
          exists: true,
          stat: st,
          size: st.size,
          ...(st.fastLinkTarget !== undefined ? { sha256: sha256(st.fastLinkTarget) } : {}),
        });
        continue;
      }
      const keep = opts.keepBytes?.has(p) ?? false;
      const entry = opts.base?.entries.get(p);
      const unchanged = !keep && entry && geometry && base ? base.unchanged(fd, geometry, st, entry) : undefined;
      const read = unchanged ?? (geometry ? readThroughMap(fd, st, geometry, keep) : undefined);
      if (!read) {
        unserved.push(p);
        out.push({ path: p, exists: true, stat: st });
        continue;
      }
      out.push({
        path: p,
        exists: true,
        stat: st,
        size: st.size,
        ...(read.sha256 ? { sha256: read.sha256 } : {}),
        ...(read.bytes ? { bytes: read.bytes } : {}),
      });
    }
  } finally {
    closeSync(fd);
  }
  if (unserved.length) {
    const dumped = new Map((await readEntryState(image, unserved, types, { ...opts, via: 'dump' })).map((s) => [s.path, s]));
    return out.map((s) => dumped.get(s.path) ?? s);
  }
  return out;
}

/** Block size and size in bytes of the ext2/3/4 filesystem in an image, from its superblock; undefined when there is none. */
function imageGeometry(fd: number): { blockSize: number; imageBytes: number } | undefined {
  const sb = Buffer.alloc(1024);
  if (readFullySync(fd, sb, 1024) !== 1024 || sb.readUInt16LE(0x38) !== 0xef53) return undefined;
  const logBlockSize = sb.readUInt32LE(0x18);
  if (logBlockSize > 6) return undefined;
  return { blockSize: 1024 << logBlockSize, imageBytes: fstatSync(fd).size };
}

const mapReadChunk = 1 << 20;
/**
 * Buffers of the map reads, one each for the whole process: the reads are
 * synchronous (no other read runs between a fill and its use), and a fresh
 * 1 MiB or two per file of every state was most of what the collector had
 * to do in a write-log run. `mapZeros` is only ever read (holes).
 */
const mapScratch = Buffer.allocUnsafe(mapReadChunk);
const baseScratch = Buffer.allocUnsafe(mapReadChunk);
const mapZeros = Buffer.alloc(mapReadChunk);

/** The data runs of a file's block map, or undefined for inline data and a map that does not parse. */
function mappedDataRuns(st: InodeStat): Array<[number, number, number]> | undefined {
  if (st.mapping === 'inline' || (st.flags & INLINE_DATA_FL) !== 0) return undefined;
  try {
    return blockMapOf(st).data;
  } catch {
    return undefined;
  }
}

/**
 * Parsed maps by stat: a state's content check asked for the same file's
 * map up to three times (the base comparison, the read, the mapping check),
 * and parsing a fragmented file's map text is most of reading its stat.
 */
const parsedMaps = new WeakMap<InodeStat, BlockMap | Error>();

/** parseBlockMap of `st.map`, parsed once per stat. Shared: callers must not change it. Throws as parseBlockMap does. */
export function blockMapOf(st: InodeStat): BlockMap {
  let m = parsedMaps.get(st);
  if (m === undefined) {
    try {
      m = parseBlockMap(st.map);
    } catch (e) {
      m = e instanceof Error ? e : new Error(String(e));
    }
    parsedMaps.set(st, m);
  }
  if (m instanceof Error) throw m;
  return m;
}

/**
 * A regular file's bytes read through its block map: each data run from its
 * physical blocks, holes and unwritten extents as zeros, up to i_size.
 * Undefined when the map cannot be trusted to say it all (inline data, a
 * map that does not parse, blocks beyond the image): debugfs reads those.
 * A file whose bytes are kept is not hashed: its caller compares the bytes
 * (a file held to its write history), and hashing a writer's file of
 * several MiB on every state cost more than reading it.
 */
function readThroughMap(
  fd: number,
  st: InodeStat,
  g: { blockSize: number; imageBytes: number },
  keepBytes: boolean,
): { sha256?: string; bytes?: Buffer } | undefined {
  const runs = mappedDataRuns(st);
  if (!runs) return undefined;
  const B = g.blockSize;
  for (const [, p, n] of runs) if (p <= 0 || (p + n) * B > g.imageBytes) return undefined;
  const bytes = keepBytes ? Buffer.alloc(st.size) : undefined;
  const hash = bytes ? undefined : createHash('sha256');
  const zeros = mapZeros;
  const buf = mapScratch;
  let at = 0;
  const feedZeros = (until: number) => {
    while (at < until) {
      const n = Math.min(zeros.length, until - at);
      hash?.update(zeros.subarray(0, n));
      at += n;
    }
  };
  // Runs are in logical order (parseBlockMap keeps debugfs's order); a run
  // starting below what was read is a map this reader does not understand.
  for (const [l, p, n] of runs) {
    const start = l * B;
    if (start >= st.size) break;
    if (start < at) return undefined;
    feedZeros(start);
    const end = Math.min(start + n * B, st.size);
    for (let off = start; off < end;) {
      const len = Math.min(mapReadChunk, end - off);
      // Kept bytes are read into their place; hashed ones through the scratch buffer.
      const into = bytes ? bytes.subarray(off, off + len) : buf.subarray(0, len);
      if (readFullySync(fd, into, p * B + (off - start)) !== len) return undefined;
      if (!bytes) hash!.update(into);
      off += len;
      at = off;
    }
  }
  // The kept buffer is zero-filled: its holes and tail need no feeding.
  if (hash) feedZeros(st.size);
  return bytes ? { bytes } : { sha256: hash!.digest('hex') };
}

/**
 * Per manifest entry (its path, sha256 and map) and base image: whether the
 * base's bytes through that map hash to that sha256. Checked once a run.
 */
const baseHashChecked = new WeakMap<ManifestEntry, Map<string, boolean>>();

/** Two block maps' data runs are the same runs. */
function sameRuns(
  a: ReadonlyArray<readonly [number, number, number]>,
  b: ReadonlyArray<readonly [number, number, number]>,
): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x[0] !== y[0] || x[1] !== y[1] || x[2] !== y[2]) return false;
  }
  return true;
}

/** The base image of a state, open for comparing a file's blocks with (ReadEntryOptions.base). */
class BaseReader implements Disposable {
  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly geometry: { blockSize: number; imageBytes: number } | undefined,
    private readonly known: ((offset: number, length: number) => boolean) | undefined,
  ) {}

  static open(path: string, unchanged?: (offset: number, length: number) => boolean): BaseReader {
    const fd = openSync(path, 'r');
    return new BaseReader(path, fd, imageGeometry(fd), unchanged);
  }

  /**
   * The manifest's sha256 when the file at `st` on the image open as `fd`
   * has the entry's map and size and the base's bytes on every block of that
   * map; undefined otherwise (the caller reads and hashes the file).
   */
  unchanged(
    fd: number,
    g: { blockSize: number; imageBytes: number },
    st: InodeStat,
    e: ManifestEntry,
  ): { sha256: string; bytes?: Buffer } | undefined {
    const bg = this.geometry;
    if (!bg || bg.blockSize !== g.blockSize || !e.sha256 || !e.blockMap || e.size !== st.size) return undefined;
    const runs = mappedDataRuns(st);
    if (!runs || !sameRuns(runs, e.blockMap.data)) return undefined;
    let checked = baseHashChecked.get(e);
    if (!checked) baseHashChecked.set(e, (checked = new Map<string, boolean>()));
    let hashed = checked.get(this.path);
    if (hashed === undefined) {
      hashed = readThroughMap(this.fd, st, bg, false)?.sha256 === e.sha256;
      checked.set(this.path, hashed);
    }
    if (!hashed) return undefined;
    return this.sameBytes(fd, g, runs, st.size) ? { sha256: e.sha256 } : undefined;
  }

  /**
   * Every byte readThroughMap would read through `runs` is the same on the
   * image and the base (and it would read them all). Synchronous preads: a
   * fragmented file is thousands of small runs, and a read through libuv's
   * thread pool costs several times the syscall.
   */
  private sameBytes(
    fd: number,
    g: { blockSize: number; imageBytes: number },
    runs: ReadonlyArray<[number, number, number]>,
    size: number,
  ): boolean {
    const B = g.blockSize;
    const bytesOfBase = this.geometry!.imageBytes;
    for (const [, p, n] of runs) if (p <= 0 || (p + n) * B > g.imageBytes || (p + n) * B > bytesOfBase) return false;
    let at = 0;
    for (const [l, p, n] of runs) {
      const start = l * B;
      if (start >= size) break;
      if (start < at) return false;
      const end = Math.min(start + n * B, size);
      for (let off = start; off < end;) {
        const len = Math.min(mapReadChunk, end - off);
        const pos = p * B + (off - start);
        // Nothing wrote these bytes since the image was the base's copy: the same bytes, not read.
        if (this.known?.(pos, len)) {
          off += len;
          continue;
        }
        const a = mapScratch.subarray(0, len);
        const b = baseScratch.subarray(0, len);
        if (readFullySync(fd, a, pos) !== len || readFullySync(this.fd, b, pos) !== len || !a.equals(b)) return false;
        off += len;
      }
      at = end;
    }
    return true;
  }

  [Symbol.dispose](): void {
    closeSync(this.fd);
  }
}

/** A manifest entry from what debugfs read of a path (stat, and the sha256 of its bytes). */
export function manifestEntry(
  s: EntryState & { stat: NonNullable<EntryState['stat']> },
  type: ManifestEntry['type'],
  shape?: string,
): ManifestEntry {
  return {
    path: s.path,
    type,
    ...(shape !== undefined ? { shape } : {}),
    size: s.stat.size,
    ...(type !== 'dir' && s.sha256 ? { sha256: s.sha256 } : {}),
    ...(s.stat.fastLinkTarget !== undefined ? { target: s.stat.fastLinkTarget } : {}),
    ino: s.stat.ino,
    mapping: s.stat.mapping,
    dataBlocks: s.stat.dataBlocks,
    ...(s.stat.map ? { blockMap: parseBlockMap(s.stat.map) } : {}),
  };
}
