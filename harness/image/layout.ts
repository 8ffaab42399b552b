import { ConfigError } from '../util/errors.ts';
import type { FileLayout, Recipe } from './recipe.ts';
import { appendRun, type BlockMap, type DataRun } from './block-map.ts';
import { backupGroups, describeBlock, type FsGeometry } from './geometry.ts';

/**
 * The layout planner: decides the physical block of every data block and
 * every indirect block of the recipe's layout files, on the free blocks an
 * image has after mkfs, and says why when a layout cannot be made. Pure: the
 * caller reads the geometry (geometry.ts), runs qcrash-layout on the plan
 * (layout-tool.ts) and compares the block map debugfs reads back with
 * `expected`.
 */

export interface LayoutFile {
  /** Index of the entry in recipe.entries (for file:line). */
  entry: number;
  path: string;
  /** i_size in bytes. */
  size: number;
  /** Logical block ranges [from, to) that hold data, ascending, not overlapping. */
  data: Array<[number, number]>;
  layout: FileLayout;
}

export interface PlannedFile {
  entry: number;
  path: string;
  size: number;
  /** qcrash-layout records after the `file` line, in allocation order. */
  records: string[];
  /** The block map debugfs must read back. */
  expected: BlockMap;
}

type Where = Array<string | number>;
type IndexKey = { key: string; level: 'IND' | 'DIND' | 'TIND' };
/** One stretch of the physical stream: an index block, or data blocks of consecutive logical numbers. */
type Item = { file: number; t: 'i'; key: string } | { file: number; t: 'd'; lblk: number; count: number };
interface Run {
  items: Item[];
  gap: number;
  at?: { block: number; where: Where };
}
interface Unit {
  runs: Run[];
  at?: { block: number; where: Where };
  /** Who the unit is for, in messages. */
  what: string;
  where: Where;
}

type ErrorAt = (where: Where, message: string) => ConfigError;
/** Physical blocks decided for each file: index blocks by key, data runs in placement order. */
interface Placement {
  indexPhys: Array<Map<string, number>>;
  dataRuns: DataRun[][];
}

export function planLayouts(recipe: Recipe, geo: FsGeometry, files: LayoutFile[]): PlannedFile[] {
  const err: ErrorAt = (where, message) =>
    recipe.source ? recipe.source.error(where, message) : new ConfigError(`${recipe.file}: ${message}`);
  // Which index blocks each data block needs first, top-down.
  const needs = files.map((f) => indexNeeds(f, geo.blockSize / 4));
  const partnerOf = interleavePartners(files, err);
  const units = files.flatMap((f, i) => fileUnits(i, files, needs, partnerOf, err));
  const placed = placeUnits(units, geo, recipe, files.length, err);
  return files.map((f, i) => plannedFile(f, needs[i]!, placed.indexPhys[i]!, placed.dataRuns[i]!));
}

/** Files interleaved with each other, both ways; each pair checked: the partner comes later and places nothing itself. */
function interleavePartners(files: readonly LayoutFile[], err: ErrorAt): Map<number, number> {
  const byPath = new Map(files.map((f, i) => [f.path, i]));
  const partnerOf = new Map<number, number>();
  files.forEach((f, i) => {
    const il = f.layout.interleave;
    if (!il) return;
    const j = byPath.get(il.with);
    const at: Where = ['entries', f.entry, 'layout', 'interleave', 'with'];
    if (j === undefined) throw err(at, `${f.path}: interleave partner ${il.with} is not a file with a layout in this recipe`);
    if (j <= i) throw err(at, `${f.path}: interleave partner ${il.with} must come after ${f.path} in the recipe`);
    if (partnerOf.has(j) || partnerOf.has(i)) throw err(at, `${f.path}: ${il.with} is already interleaved with another file`);
    const g = files[j]!.layout;
    for (const k of ['start', 'runs', 'split', 'interleave'] as const) {
      if (g[k] !== undefined)
        throw err(
          ['entries', files[j]!.entry, 'layout', k],
          `${il.with} is interleaved with ${f.path}, which decides where it goes: remove its "${k}"`,
        );
    }
    partnerOf.set(j, i);
    partnerOf.set(i, j);
  });
  return partnerOf;
}

/** The units file `i` places (none for the later file of an interleaved pair: it goes with its partner). */
function fileUnits(
  i: number,
  files: readonly LayoutFile[],
  needs: ReadonlyArray<Map<number, IndexKey[]>>,
  partnerOf: ReadonlyMap<number, number>,
  err: ErrorAt,
): Unit[] {
  if (partnerOf.has(i) && partnerOf.get(i)! < i) return [];
  const f = files[i]!;
  const base: Where = ['entries', f.entry, 'layout'];
  let runs: Run[];
  if (f.layout.interleave) {
    const j = partnerOf.get(i)!;
    runs = [
      {
        items: interleave(streamOf(i, files[i]!, needs[i]!), streamOf(j, files[j]!, needs[j]!), f.layout.interleave.blocks),
        gap: 0,
      },
    ];
  } else {
    runs = dataRuns(i, f, needs[i]!, (w, m) => err([...base, ...w], m));
  }
  if (f.layout.start !== undefined && f.layout.start !== 'next') {
    if (runs[0]!.at) throw err([...base, 'start'], `${f.path}: both "start" and the first run's "at" place the file: keep one`);
    runs[0]!.at = { block: f.layout.start, where: [...base, 'start'] };
  }
  const units = unitsOfRuns(f, runs, base);
  for (const k of partnerOf.has(i) ? [i, partnerOf.get(i)!] : [i]) {
    const u = indirectUnit(k, files[k]!, needs[k]!);
    if (u) units.push(u);
  }
  return units;
}

/** An explicit `at` starts a new unit; the runs after it follow at their gaps. */
function unitsOfRuns(f: LayoutFile, runs: readonly Run[], base: Where): Unit[] {
  const units: Unit[] = [];
  let cur: Unit | undefined;
  for (const r of runs) {
    if (!cur || r.at) {
      cur = { runs: [], what: f.path, where: base, ...(r.at ? { at: r.at, where: r.at.where } : {}) };
      units.push(cur);
    }
    cur.runs.push(cur.runs.length ? r : { ...r, gap: 0 });
  }
  return units;
}

/** A file's index blocks as a unit of their own, when its layout places them apart from its data (`indirect`). */
function indirectUnit(k: number, g: LayoutFile, needs: Map<number, IndexKey[]>): Unit | undefined {
  const ind = g.layout.indirect ?? 'inline';
  if (ind === 'inline') return undefined;
  const keys = [...needs.values()].flat();
  if (!keys.length) return undefined;
  const where: Where = ['entries', g.entry, 'layout', 'indirect'];
  return {
    runs: [{ items: keys.map((x) => ({ file: k, t: 'i' as const, key: x.key })), gap: 0 }],
    what: `${g.path}'s indirect blocks`,
    where,
    ...(typeof ind === 'object' ? { at: { block: ind.at, where: [...where, 'at'] } } : {}),
  };
}

/** Place every unit: anchored ones exactly, the others first-fit after the previous one. */
function placeUnits(units: readonly Unit[], geo: FsGeometry, recipe: Recipe, nFiles: number, err: ErrorAt): Placement {
  const free = new FreeSpace(geo.free);
  const placed: Placement = {
    indexPhys: Array.from({ length: nFiles }, () => new Map<string, number>()),
    dataRuns: Array.from({ length: nFiles }, () => []),
  };
  let cursor = 0;
  for (const u of units) {
    const layoutOf = unitLayout(u);
    const start = u.at
      ? anchoredStart(u, u.at, layoutOf.occupied, free, geo, err)
      : firstFitStart(u, layoutOf.span, cursor, free, geo, recipe, err);
    for (const [off, len] of layoutOf.occupied) free.claim(start + off, len, u.what);
    cursor = start + layoutOf.span;
    let pos = start;
    for (const r of u.runs) {
      pos += r.gap;
      for (const it of r.items) {
        if (it.t === 'i') placed.indexPhys[it.file]!.set(it.key, pos++);
        else {
          placed.dataRuns[it.file]!.push([it.lblk, pos, it.count]);
          pos += it.count;
        }
      }
    }
  }
  return placed;
}

/** A unit anchored at a block: every block it occupies there must be free. */
function anchoredStart(
  u: Unit,
  at: { block: number; where: Where },
  occupied: ReadonlyArray<[number, number]>,
  free: FreeSpace,
  geo: FsGeometry,
  err: ErrorAt,
): number {
  const start = at.block;
  for (const [off, len] of occupied) {
    const bad = free.firstTaken(start + off, len);
    if (bad !== undefined) {
      const owner = free.owner(bad) ?? describeBlock(geo, bad);
      throw err(at.where, `${u.what}: cannot be placed at block ${start}: block ${bad} is ${owner}`);
    }
  }
  return start;
}

/** The first free stretch long enough, after `cursor` if there is one there, else from the start. */
function firstFitStart(
  u: Unit,
  span: number,
  cursor: number,
  free: FreeSpace,
  geo: FsGeometry,
  recipe: Recipe,
  err: ErrorAt,
): number {
  const s = free.firstFit(span, cursor) ?? free.firstFit(span, 0);
  if (s === undefined) throw err(u.where, `${u.what}: ${whyNoRoom(geo, free, span, recipe)}`);
  return s;
}

/** A file's plan: its expected block map, and the qcrash-layout records in allocation order. */
function plannedFile(
  f: LayoutFile,
  needAt: Map<number, IndexKey[]>,
  indexPhys: Map<string, number>,
  placedRuns: DataRun[],
): PlannedFile {
  const runs = placedRuns.sort((a, b) => a[0] - b[0]);
  const data: DataRun[] = [];
  for (const r of runs) appendRun(data, r);
  const order = [...needAt.entries()].sort((a, b) => a[0] - b[0]);
  const index: Array<[string, number]> = order.flatMap(([, ks]) =>
    ks.map((k) => [k.level, indexPhys.get(k.key)!] as [string, number]),
  );
  return {
    entry: f.entry,
    path: f.path,
    size: f.size,
    records: allocationRecords(runs, needAt, indexPhys),
    expected: { data, index },
  };
}

/** Records in allocation order: before each data block, the index blocks it needs first. */
function allocationRecords(runs: readonly DataRun[], needAt: Map<number, IndexKey[]>, indexPhys: Map<string, number>): string[] {
  const records: string[] = [];
  for (const [l0, p0, n] of runs) {
    let segStart = l0;
    for (let l = l0; l < l0 + n; l++) {
      const ks = needAt.get(l);
      if (!ks) continue;
      if (l > segStart) records.push(`data ${segStart} ${p0 + (segStart - l0)} ${l - segStart}`);
      for (const k of ks) records.push(`index ${indexPhys.get(k.key)!}`);
      segStart = l;
    }
    records.push(`data ${segStart} ${p0 + (segStart - l0)} ${l0 + n - segStart}`);
  }
  return records;
}

/** For each logical block that needs new index blocks, those blocks top-down (the order bmap allocates them). */
function indexNeeds(f: LayoutFile, p: number): Map<number, IndexKey[]> {
  const seen = new Set<string>();
  const out = new Map<number, IndexKey[]>();
  const d1 = 12 + p;
  const d2 = d1 + p * p;
  for (const [a, b] of f.data) {
    // Only the first block of each index block's span can need it first; walk those boundaries, not every block.
    let l = a;
    while (l < b) {
      const keys: IndexKey[] = [];
      let next: number;
      if (l < 12) next = 12;
      else if (l < d1) {
        keys.push({ key: 'ind', level: 'IND' });
        next = d1;
      } else if (l < d2) {
        const i = Math.floor((l - d1) / p);
        keys.push({ key: 'dind', level: 'DIND' }, { key: `dind/${i}`, level: 'IND' });
        next = d1 + (i + 1) * p;
      } else {
        const j = Math.floor((l - d2) / (p * p));
        const i = Math.floor((l - d2 - j * p * p) / p);
        keys.push({ key: 'tind', level: 'TIND' }, { key: `tind/${j}`, level: 'DIND' }, { key: `tind/${j}/${i}`, level: 'IND' });
        next = d2 + j * p * p + (i + 1) * p;
      }
      const fresh = keys.filter((k) => !seen.has(k.key));
      for (const k of fresh) seen.add(k.key);
      if (fresh.length) out.set(l, fresh);
      l = Math.min(b, next);
    }
  }
  return out;
}

/** The file's data blocks as items, with its inline index blocks just before the data block that needs them. */
function streamOf(file: number, f: LayoutFile, needs: Map<number, IndexKey[]>): Item[] {
  const inline = (f.layout.indirect ?? 'inline') === 'inline';
  const items: Item[] = [];
  for (const [a, b] of f.data) pushData(items, file, a, b - a, inline ? needs : undefined);
  return items;
}

function pushData(items: Item[], file: number, lblk: number, count: number, needs: Map<number, IndexKey[]> | undefined): void {
  let s = lblk;
  const end = lblk + count;
  if (needs) {
    for (const [l, ks] of [...needs].filter(([l]) => l >= lblk && l < end).sort((x, y) => x[0] - y[0])) {
      if (l > s) items.push({ file, t: 'd', lblk: s, count: l - s });
      for (const k of ks) items.push({ file, t: 'i', key: k.key });
      s = l;
    }
  }
  if (end > s) items.push({ file, t: 'd', lblk: s, count: end - s });
}

/** Cut a file's data (logical order, holes skipped) into its physical runs. */
function dataRuns(
  file: number,
  f: LayoutFile,
  needs: Map<number, IndexKey[]>,
  err: (where: Where, m: string) => ConfigError,
): Run[] {
  const L = f.layout;
  const defaultGap = L.contiguous === false ? 1 : 0;
  const total = f.data.reduce((n, [a, b]) => n + b - a, 0);
  const inline = (L.indirect ?? 'inline') === 'inline' ? needs : undefined;
  if (!total) throw err([], `${f.path}: a layout needs data blocks, and this file has none`);
  const sizes: Array<{ blocks: number; gap: number; at?: number; where: Where }> = [];
  if (L.runs) {
    if (L.split) throw err(['split'], `${f.path}: give either "runs" or "split"`);
    L.runs.forEach((r, k) => {
      const o = typeof r === 'number' ? { blocks: r } : r;
      sizes.push({ blocks: o.blocks, gap: o.gap ?? defaultGap, ...(o.at !== undefined ? { at: o.at } : {}), where: ['runs', k] });
    });
    const sum = sizes.reduce((n, s) => n + s.blocks, 0);
    if (sum !== total) throw err(['runs'], `${f.path}: the runs add up to ${sum} blocks, but the file has ${total} data blocks`);
  } else if (L.split) {
    for (let n = 0; n < total; n += L.split.blocks)
      sizes.push({ blocks: Math.min(L.split.blocks, total - n), gap: L.split.gap ?? 1, where: ['split'] });
  } else {
    for (const [a, b] of f.data) sizes.push({ blocks: b - a, gap: defaultGap, where: [] });
  }
  // Walk the data ranges, taking each run's blocks in turn.
  const runs: Run[] = [];
  let ri = 0;
  let off = 0;
  for (const s of sizes) {
    const items: Item[] = [];
    let want = s.blocks;
    while (want > 0) {
      const [a, b] = f.data[ri]!;
      const n = Math.min(want, b - a - off);
      pushData(items, file, a + off, n, inline);
      want -= n;
      off += n;
      if (a + off === b) {
        ri++;
        off = 0;
      }
    }
    runs.push({
      items,
      gap: s.gap,
      ...(s.at !== undefined ? { at: { block: s.at, where: ['entries', f.entry, 'layout', ...s.where, 'at'] } } : {}),
    });
  }
  return runs;
}

/** Alternate chunks of `k` data blocks of two streams (index items travel with the data block after them). */
function interleave(a: Item[], b: Item[], k: number): Item[] {
  const out: Item[] = [];
  const qa = [...a];
  const qb = [...b];
  const take = (q: Item[]): void => {
    let want = k;
    while (want > 0 && q.length) {
      const it = q[0]!;
      if (it.t === 'i') {
        out.push(q.shift()!);
        continue;
      }
      const n = Math.min(want, it.count);
      out.push({ ...it, count: n });
      want -= n;
      if (n === it.count) q.shift();
      else q[0] = { ...it, lblk: it.lblk + n, count: it.count - n };
    }
  };
  while (qa.length || qb.length) {
    take(qa);
    take(qb);
  }
  return out;
}

/** A unit's span in blocks and the [offset, length] stretches it occupies (gaps stay free). */
function unitLayout(u: Unit): { span: number; occupied: Array<[number, number]> } {
  let off = 0;
  const occupied: Array<[number, number]> = [];
  for (const r of u.runs) {
    off += r.gap;
    const len = r.items.reduce((n, it) => n + (it.t === 'i' ? 1 : it.count), 0);
    occupied.push([off, len]);
    off += len;
  }
  return { span: off, occupied };
}

function whyNoRoom(geo: FsGeometry, free: FreeSpace, span: number, recipe: Recipe): string {
  const [la, lb] = free.longest();
  const longest = lb >= la ? lb - la + 1 : 0;
  const base = `no free stretch of ${span} blocks is left (the longest is ${longest} blocks${longest ? `, ${la}-${lb}` : ''})`;
  // Without flex_bg a group's own bitmaps and inode table sit inside it: no stretch is longer than the emptiest group's free part.
  const groupRoom = Math.max(
    ...geo.groups.map(
      (g) =>
        g.last -
        g.first +
        1 -
        g.metadata.reduce((n, m) => n + (m.first >= g.first && m.last <= g.last ? m.last - m.first + 1 : 0), 0),
    ),
  );
  if (geo.flexBgSize === 0 && span > groupRoom) {
    return `${base}: impossible without flex_bg, where every block group (${geo.blocksPerGroup} blocks) starts with its own bitmaps and inode table, so no run can be longer than ${groupRoom} blocks here. A run this long needs flex_bg (drop "flex_bg: false" or set flex_bg: N) and groups without backup superblocks.`;
  }
  if (span > geo.blocksPerGroup) {
    const backups = backupGroups(geo);
    return `${base}: a run longer than a block group (${geo.blocksPerGroup} blocks) needs consecutive groups without backup superblocks (here groups ${backups.join(', ')} hold one) and without packed group metadata (flex_bg: N packs the metadata of N groups into the first group of each flex group; flex_bg is ${geo.flexBgSize || 'off'} here). Make size_mb larger than ${recipe.sizeMb}, or pack the metadata with a larger flex_bg.`;
  }
  return `${base}: make size_mb larger than ${recipe.sizeMb}`;
}

/** Free blocks as sorted, disjoint inclusive intervals, with who claimed what for messages. */
class FreeSpace {
  private iv: Array<[number, number]>;
  private claims: Array<{ first: number; last: number; by: string }> = [];
  constructor(free: Array<[number, number]>) {
    this.iv = free.map(([a, b]) => [a, b]);
  }

  /** First block in [s, s+len) that is not free, or undefined. */
  firstTaken(s: number, len: number): number | undefined {
    let b = s;
    const end = s + len - 1;
    for (const [x, y] of this.iv) {
      if (y < b) continue;
      if (x > b) return b;
      if (y >= end) return undefined;
      b = y + 1;
    }
    return b <= end ? b : undefined;
  }

  firstFit(len: number, from: number): number | undefined {
    for (const [x, y] of this.iv) {
      const s = Math.max(x, from);
      if (s + len - 1 <= y) return s;
    }
    return undefined;
  }

  claim(s: number, len: number, by: string): void {
    if (len <= 0) return;
    const e = s + len - 1;
    const out: Array<[number, number]> = [];
    for (const [x, y] of this.iv) {
      if (y < s || x > e) out.push([x, y]);
      else {
        if (x < s) out.push([x, s - 1]);
        if (y > e) out.push([e + 1, y]);
      }
    }
    this.iv = out;
    this.claims.push({ first: s, last: e, by });
  }

  owner(b: number): string | undefined {
    const c = this.claims.find((x) => b >= x.first && b <= x.last);
    return c ? `already taken by ${c.by}` : undefined;
  }

  longest(): [number, number] {
    let best: [number, number] = [0, -1];
    for (const [x, y] of this.iv) if (y - x > best[1] - best[0]) best = [x, y];
    return best;
  }
}
