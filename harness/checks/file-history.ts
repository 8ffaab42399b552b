import { SECTOR, generatedBytes, holeStoreValues, sectorHeader, writerSector } from '../guest/content.ts';
import { opComplete, type FileExpectation, type FileOp } from '../crash/expectations.ts';
import { InfraError } from '../util/errors.ts';

/**
 * The bytes a file may hold after a crash, sector by sector, from its
 * history (crash/expectations.ts FileExpectation): what the durable ops
 * left must read back exactly; after those, each 512-byte sector may hold
 * what any later op left in it, never anything else. A sector is the unit
 * because a crash may tear a multi-sector write between sectors; an mmap
 * rewriter's sector may also be torn between two consecutive rounds at
 * 8-byte words (writeback copies a page while the writer stores into it), a
 * buffered rewriter's at any byte (the kernel's copy into the page cache
 * races the device reading the page under writeback). A rewriter's range
 * may start past 0 and cover the recipe's data, its holes and bytes past its
 * end: a sector of the range holds the file's bytes before the writer or a
 * round's stamp, nothing else.
 */

/** The file before the workload: the recipe's bytes and data ranges, or nothing for a new file. */
export interface FileOrigin {
  bytes: Buffer;
  /** Byte ranges [start, end) allocated with data; the rest is a hole. */
  data: Array<[number, number]>;
}

interface BadSector {
  sector: number;
  offset: number;
  expected: string;
  found: string;
}

export interface HistoryVerdict {
  /** Every op durable: one value per sector, and one size. */
  exact: boolean;
  sizes: { min: number; max: number };
  /** The file may be absent (a new file none of whose ops was made durable). */
  mayBeMissing: boolean;
  /** The first bad sectors (at most `limit`), and how many there are. */
  bad: BadSector[];
  badCount: number;
}

/** The model of the file disagrees with what the guest reported (a harness problem, not a finding): exit 3. */
export class HistoryModelError extends InfraError {}

const PAGE = 4096;

/** One version of the file: its bytes, size, which sectors are known, who wrote each, which blocks are allocated. */
class Version {
  constructor(
    readonly bytes: Buffer,
    public size: number,
    readonly known: Uint8Array,
    readonly writer: Int16Array,
    readonly alloc: Uint8Array,
  ) {}

  static initial(origin: FileOrigin, cap: number, blockSize: number): Version {
    const bytes = Buffer.alloc(cap);
    origin.bytes.copy(bytes);
    const alloc = new Uint8Array(Math.ceil(cap / blockSize) + 1);
    for (const [a, b] of origin.data) for (let blk = Math.floor(a / blockSize); blk * blockSize < b; blk++) alloc[blk] = 1;
    return new Version(
      bytes,
      origin.bytes.length,
      new Uint8Array(cap / SECTOR).fill(1),
      new Int16Array(cap / SECTOR).fill(-1),
      alloc,
    );
  }

  clone(): Version {
    return new Version(Buffer.from(this.bytes), this.size, this.known.slice(), this.writer.slice(), this.alloc.slice());
  }

  sector(s: number, len = SECTOR): Buffer {
    return this.bytes.subarray(s * SECTOR, s * SECTOR + len);
  }

  /** Whether `a` (sector s's bytes, up to SECTOR of them) is this version's sector s: compared in place, no slice made (the check's hottest line). */
  sectorIs(s: number, a: Buffer): boolean {
    const at = s * SECTOR;
    return at + a.length <= this.bytes.length && a.compare(this.bytes, at, at + a.length) === 0;
  }
}

/** mmap-holes' view of a version: its page-aligned hole pages in file order. */
function holePages(v: Version, blockSize: number): number[] {
  const out: number[] = [];
  const pages = Math.floor(v.size / PAGE);
  const perPage = Math.max(1, PAGE / blockSize);
  for (let p = 0; p < pages; p++) {
    let hole = true;
    for (let b = 0; b < perPage && hole; b++) if (v.alloc[(p * PAGE) / blockSize + b]) hole = false;
    if (hole) out.push(p * PAGE);
  }
  return out;
}

/** Apply a completed op (or an incomplete one as if completed, with its rewritten sectors unknown). */
function apply(v: Version, op: FileOp, i: number, blockSize: number): Version {
  const n = v.clone();
  const allocate = (a: number, b: number) => {
    for (let blk = Math.floor(a / blockSize); blk * blockSize < b; blk++) n.alloc[blk] = 1;
  };
  switch (op.kind) {
    case 'write': {
      generatedBytes(op.seed, op.size).copy(n.bytes, op.offset);
      const end = op.offset + op.size;
      n.size = Math.max(n.size, end);
      for (let s = Math.floor(op.offset / SECTOR); s * SECTOR < end; s++) {
        n.writer[s] = i;
        if (s * SECTOR >= op.offset && (s + 1) * SECTOR <= end) n.known[s] = 1;
      }
      allocate(op.offset, end);
      return n;
    }
    case 'writer': {
      const { first, end } = rewriterSectors(op);
      n.size = Math.max(n.size, end * SECTOR);
      // Stopped before its first round: it only grew the file (zeros).
      if (op.rounds === 0) return n;
      for (let s = first; s < end; s++) {
        n.writer[s] = i;
        if (op.rounds === undefined) n.known[s] = 0;
        else {
          writerSector(op.seed, op.rounds - 1, s).copy(n.bytes, s * SECTOR);
          n.known[s] = 1;
        }
      }
      allocate(first * SECTOR, end * SECTOR);
      return n;
    }
    case 'mmap-holes': {
      const pages = holePages(v, blockSize);
      if (op.holes !== undefined) {
        const first = pages[0] ?? -1;
        const last = pages.at(-1) ?? -1;
        if (op.holes !== pages.length || op.first !== first || op.last !== last) {
          throw new HistoryModelError(
            `mmap-holes step "${op.step}" found ${op.holes} hole pages (first at ${op.first}, last at ${op.last}) where the host's model of the file has ${pages.length} (first at ${first}, last at ${last})`,
          );
        }
      }
      const values = holeStoreValues(op.seed, pages.length);
      const stored = op.stored ?? pages.length;
      for (let k = 0; k < stored && k < pages.length; k++) {
        n.bytes[pages[k]!] = values[k]!;
        n.writer[pages[k]! / SECTOR] = i;
        allocate(pages[k]!, pages[k]! + PAGE);
      }
      return n;
    }
  }
}

type Rewriter = Extract<FileOp, { kind: 'writer' }>;

/** The sectors a rewriter's rounds cover: [first, end). */
function rewriterSectors(op: Rewriter): { first: number; end: number } {
  const first = (op.offset ?? 0) / SECTOR;
  return { first, end: first + op.size / SECTOR };
}

/** Whether sector `s` lies inside version `v`'s size (a partial last sector counts). */
function holds(v: Version, s: number): boolean {
  return s * SECTOR < v.size;
}

function isZero(b: Buffer): boolean {
  for (const x of b) if (x) return false;
  return true;
}

/** A sector of some round of a rewriter: right header for its place, a round it may have reached, the generator's body. */
function roundSector(op: Rewriter, s: number, a: Buffer): number | undefined {
  const h = sectorHeader(a);
  if (!h || h.index !== s) return undefined;
  if (op.rounds !== undefined && h.round >= op.rounds) return undefined;
  return a.compare(writerSector(op.seed, h.round, s), 0, a.length) === 0 ? h.round : undefined;
}

/** Every `word`-byte word from one of two versions of the sector. Byte by byte, no slices: three per word made it the check's busiest allocator. */
function wordMix(a: Buffer, x: Buffer, y: Buffer, word: number): boolean {
  for (let w = 0; w < a.length; w += word) {
    const end = Math.min(w + word, a.length);
    let fromX = true;
    let fromY = true;
    for (let i = w; i < end && (fromX || fromY); i++) {
      if (a[i] !== x[i]) fromX = false;
      if (a[i] !== y[i]) fromY = false;
    }
    if (!fromX && !fromY) return false;
  }
  return true;
}

/** How finely a rewriter's sector may be torn between two rounds: mmap stores whole words, the kernel's copy into the page cache any byte; O_DIRECT never. */
const tearWord: Partial<Record<Rewriter['mode'], number>> = { mmap: 8, buffered: 1 };

/** A page-cache rewriter's sector torn between two consecutive versions: before the op and round 0, or rounds r and r+1. */
function tornSector(op: Rewriter, s: number, a: Buffer, before: Version): boolean {
  const word = tearWord[op.mode];
  if (!word) return false;
  const reached = (r: number) => r >= 0 && (op.rounds === undefined || r < op.rounds);
  const round = (r: number) => writerSector(op.seed, r, s).subarray(0, a.length);
  const h = sectorHeader(a);
  const pairs: Array<[Buffer, Buffer]> = [];
  if (h && h.index === s) {
    const r = h.round;
    if (r === 0 && before.known[s]) pairs.push([before.sector(s, a.length), round(0)]);
    if (reached(r - 1) && reached(r)) pairs.push([round(r - 1), round(r)]);
    if (reached(r) && reached(r + 1)) pairs.push([round(r), round(r + 1)]);
  } else if (before.known[s] && reached(0)) {
    pairs.push([before.sector(s, a.length), round(0)]);
  }
  return pairs.some(([x, y]) => wordMix(a, x, y, word));
}

/**
 * Versions already built, by origin, then by size and ops so far: a
 * write-log run checks the same file in hundreds of states whose histories
 * share their first ops, and building a version (a copy of the file, the
 * generator's bytes) cost more than the rest of a state's check. Versions
 * are never written once built. Bounded per origin (oldest out first).
 */
const versionCache = new WeakMap<FileOrigin, Map<string, Version>>();
const versionsPerOrigin = 64;

/** The file's version before any op, then after each op in turn: chain[i] follows ops[0..i). */
function versionChain(ops: readonly FileOp[], origin: FileOrigin, cap: number, blockSize: number): Version[] {
  let cache = versionCache.get(origin);
  if (!cache) versionCache.set(origin, (cache = new Map<string, Version>()));
  const memo = (key: string, make: () => Version): Version => {
    const known = cache.get(key);
    if (known) return known;
    const v = make();
    if (cache.size >= versionsPerOrigin) cache.delete(cache.keys().next().value!);
    cache.set(key, v);
    return v;
  };
  let key = `${cap}/${blockSize}`;
  const chain = [memo(key, () => Version.initial(origin, cap, blockSize))];
  for (const [i, op] of ops.entries()) {
    key += `|${JSON.stringify(op)}`;
    const before = chain[i]!;
    chain.push(memo(key, () => apply(before, op, i, blockSize)));
  }
  return chain;
}

export interface CheckHistoryOptions {
  blockSize: number;
  /** How many bad sectors to describe (all are counted). */
  limit?: number;
}

/**
 * Whether some version of the history explains sector `s` holding `a`:
 * versions[0] is the durable state, versions[k] follows op durable+k-1.
 * A version explains a sector only inside its own size: past its end of
 * file it holds nothing, not zeros. A file whose size grew (a write past EOF
 * made durable) with zeros where the write's bytes belong is no state of its
 * history: the size of one version with the bytes of another.
 */
function sectorExplained(exp: FileExpectation, versions: readonly Version[], exact: boolean, s: number, a: Buffer): boolean {
  if (holds(versions[0]!, s) && versions[0]!.sectorIs(s, a)) return true;
  if (exact) return false;
  for (let k = 1; k < versions.length; k++)
    if (holds(versions[k]!, s) && versions[k]!.known[s] === 1 && versions[k]!.sectorIs(s, a)) return true;
  for (let k = 1; k < versions.length; k++) {
    const op = exp.ops[exp.durable + k - 1]!;
    const before = versions[k - 1]!;
    if (op.kind !== 'writer' || s < rewriterSectors(op).first || s >= rewriterSectors(op).end) continue;
    // A rewriter grows the file with ftruncate before its first round: zeros past the old end are a state.
    if (roundSector(op, s, a) !== undefined || tornSector(op, s, a, before) || (!holds(before, s) && isZero(a))) return true;
  }
  return false;
}

/** Sectors per run durableRun compares at once (32 KiB). */
const runSectors = 64;

/**
 * sectorExplained's first test (version `v` holds sector s, and its bytes
 * there are `actual`'s) for the sectors from `s` on, up to runSectors of
 * them, at once: how many sectors passed, or 0 when one of them did not
 * (the caller then judges each alone). The run ends where v's size, v's
 * bytes or `actual` end; a last sector cut short by `actual`'s end is
 * compared as far as it goes, as sectorExplained compares it.
 */
function durableRun(v: Version, actual: Buffer, s: number): number {
  const at = s * SECTOR;
  // Sector k is inside v's size when k * SECTOR < v.size, i.e. k < ceil(size / SECTOR).
  const end = Math.min(actual.length, v.bytes.length, Math.ceil(v.size / SECTOR) * SECTOR, at + runSectors * SECTOR);
  if (end <= at || actual.compare(v.bytes, at, end, at, end) !== 0) return 0;
  return Math.ceil((end - at) / SECTOR);
}

/**
 * The sectors of `actual` to judge one by one. Most sectors of most states
 * are the durable version's (`v`): a run of them is compared in one call,
 * with no slice per sector (a slice per sector was most of what a write-log
 * run allocated). A run that differs somewhere is judged sector by sector,
 * and runs are tried again after it.
 */
function* sectorsToJudge(v: Version, actual: Buffer): Generator<number> {
  const sectors = Math.ceil(actual.length / SECTOR);
  let runsFrom = 0;
  for (let s = 0; s < sectors; s++) {
    if (s >= runsFrom) {
      const run = durableRun(v, actual, s);
      if (run) {
        s += run - 1;
        continue;
      }
      runsFrom = s + runSectors;
    }
    yield s;
  }
}

/**
 * Check a file's bytes (undefined: the file is missing) against its history.
 * The size is judged by the caller from `sizes`; here every sector of the
 * bytes present is judged.
 */
export function checkFileHistory(
  exp: FileExpectation,
  origin: FileOrigin,
  actual: Buffer | undefined,
  opts: CheckHistoryOptions,
): HistoryVerdict {
  const B = opts.blockSize;
  const limit = opts.limit ?? 8;
  let cap = Math.max(origin.bytes.length, actual?.length ?? 0);
  for (const op of exp.ops)
    cap = Math.max(cap, op.kind === 'write' ? op.offset + op.size : op.kind === 'writer' ? rewriterSectors(op).end * SECTOR : 0);
  cap = Math.ceil(cap / PAGE) * PAGE || PAGE;

  // An op still running at the crash (a writer never stopped) counts as completed in its
  // version: mmap-holes with every store made, a rewriter with its sectors unknown (any round).
  const chain = versionChain(exp.ops, origin, cap, B);
  const exactState = chain[exp.durable]!;
  // versions[0] is the durable state; versions[k] follows op durable+k-1.
  const versions: Version[] = chain.slice(exp.durable);
  const exact = exp.durable === exp.ops.length && exp.ops.every(opComplete);
  const sizes = { min: exactState.size, max: Math.max(...versions.map((v) => v.size)) };
  const verdict: HistoryVerdict = { exact, sizes, mayBeMissing: exp.origin === 'new' && exp.durable === 0, bad: [], badCount: 0 };
  if (!actual) return verdict;

  const describe = (v: Version, s: number): string => {
    const w = v.writer[s]!;
    if (w < 0) {
      if (exp.origin === 'new') return 'zeros (before any write)';
      const off = s * SECTOR;
      return origin.data.some(([a, b]) => off < b && off + SECTOR > a) ? "the recipe's bytes" : 'zeros (a hole of the recipe)';
    }
    const op = exp.ops[w]!;
    if (op.kind === 'writer')
      return op.rounds !== undefined
        ? `round ${op.rounds - 1} of writer step "${op.step}"`
        : `a round of writer step "${op.step}"`;
    if (op.kind === 'mmap-holes') return `the store of mmap-holes step "${op.step}"`;
    return `the bytes of write step "${op.step}"`;
  };
  const found = (a: Buffer, s: number): string => {
    if (isZero(a)) return 'zeros';
    const h = sectorHeader(a);
    if (h) {
      const w = exp.ops.find((o): o is Extract<FileOp, { kind: 'writer' }> => o.kind === 'writer');
      const intact = w && a.equals(writerSector(w.seed, h.round, h.index).subarray(0, a.length));
      return `a writer's sector of round ${h.round} for offset ${h.index * SECTOR}${w && !intact ? ' with other bytes after its header' : ''}`;
    }
    if (exp.origin === 'recipe' && a.equals(origin.bytes.subarray(s * SECTOR, s * SECTOR + a.length)))
      return "the recipe's original bytes";
    return `other bytes (${a.subarray(0, 16).toString('hex')}...)`;
  };

  for (const s of sectorsToJudge(versions[0]!, actual)) {
    const len = Math.min(SECTOR, actual.length - s * SECTOR);
    const a = actual.subarray(s * SECTOR, s * SECTOR + len);
    if (sectorExplained(exp, versions, exact, s, a)) continue;
    verdict.badCount++;
    if (verdict.bad.length < limit) {
      const expected = exact
        ? describe(exactState, s)
        : [...new Set([describe(exactState, s), ...versions.slice(1).map((v) => describe(v, s))])].join(' or ');
      verdict.bad.push({ sector: s, offset: s * SECTOR, expected, found: found(a, s) });
    }
  }
  return verdict;
}
