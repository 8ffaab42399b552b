/**
 * A file's physical block map as debugfs prints it (`stat`'s BLOCKS: or
 * EXTENTS: section), in a form that can be stored in a manifest and
 * compared: which logical blocks sit on which physical blocks, and where
 * the map's own blocks (indirect blocks, extent tree blocks) are.
 */

/** [first logical block, first physical block, length]: logically and physically contiguous. */
export type DataRun = [number, number, number];

export interface BlockMap {
  /** Data runs in logical order, merged where both logical and physical blocks continue. */
  data: DataRun[];
  /** Unwritten extents (read as zeros), in logical order; absent when none. */
  unwritten?: DataRun[];
  /** The map's own blocks in the order debugfs lists them (pre-order): [kind, physical block], kind IND|DIND|TIND|ETB0|ETB1... */
  index: Array<[string, number]>;
}

/**
 * Parse the map section of `debugfs -R stat`: "(0-11):5000-5011, (IND):9000,
 * (12-267):5012-5267" or "(ETB0):700, (0-32767):81921-114688, (32768[u]):114689".
 * Accepts the section with or without its "BLOCKS:"/"EXTENTS:" heading and
 * "TOTAL:" line.
 */
export function parseBlockMap(text: string): BlockMap {
  const data: DataRun[] = [];
  const unwritten: DataRun[] = [];
  const index: Array<[string, number]> = [];
  const body = text.replace(/^(BLOCKS|EXTENTS):\s*/m, '').replace(/^TOTAL:.*$/m, '');
  for (const m of body.matchAll(/\(([A-Z]+\d*|\d+(?:-\d+)?(?:\[u\])?)\):(\d+)(?:-(\d+))?/g)) {
    const what = m[1]!;
    const p = Number(m[2]);
    if (/^[A-Z]/.test(what)) {
      index.push([what, p]);
      continue;
    }
    const r = /^(\d+)(?:-(\d+))?(\[u\])?$/.exec(what)!;
    const a = Number(r[1]);
    const b = r[2] === undefined ? a : Number(r[2]);
    const run: DataRun = [a, p, b - a + 1];
    if (m[3] !== undefined && Number(m[3]) - p !== b - a)
      throw new Error(`debugfs map entry ${m[0]} has different logical and physical lengths`);
    appendRun(r[3] ? unwritten : data, run);
  }
  return { data, ...(unwritten.length ? { unwritten } : {}), index };
}

/** Append a run, merging it into the previous one when both logical and physical blocks continue. */
export function appendRun(runs: DataRun[], run: DataRun): void {
  const last = runs.at(-1);
  if (last && last[0] + last[2] === run[0] && last[1] + last[2] === run[1]) last[2] += run[2];
  else runs.push([...run]);
}

/** Number of data blocks a map holds (holes and unwritten extents excluded). */
export function mappedBlocks(map: BlockMap): number {
  return map.data.reduce((n, r) => n + r[2], 0);
}

/** Longest physically contiguous data run (logically contiguous too), in blocks. */
export function longestRun(map: BlockMap): number {
  return map.data.reduce((n, r) => Math.max(n, r[2]), 0);
}

/**
 * The first difference between two files' data mappings (logical block ->
 * physical block), or undefined when they map the same blocks. Unwritten
 * extents count as a difference: their blocks read as zeros.
 */
export function diffDataMaps(before: BlockMap, after: BlockMap): string | undefined {
  if (after.unwritten?.length) {
    const u = after.unwritten[0]!;
    return `logical ${fmtRange(u[0], u[2])} is now an unwritten extent at ${fmtRange(u[1], u[2])} (reads as zeros)`;
  }
  const a = normalise(before.data);
  const b = normalise(after.data);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x && y && x[0] === y[0] && x[1] === y[1] && x[2] === y[2]) continue;
    const was = x ? `logical ${fmtRange(x[0], x[2])} on ${fmtRange(x[1], x[2])}` : 'nothing more';
    const now = y ? `logical ${fmtRange(y[0], y[2])} on ${fmtRange(y[1], y[2])}` : 'nothing more';
    return `data run ${i + 1}: was ${was}, now ${now}`;
  }
  return undefined;
}

function normalise(runs: DataRun[]): DataRun[] {
  const out: DataRun[] = [];
  for (const r of runs) appendRun(out, r);
  return out;
}

function fmtRange(start: number, len: number): string {
  return len === 1 ? String(start) : `${start}-${start + len - 1}`;
}
