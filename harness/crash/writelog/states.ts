import { sha256 } from '../../util/hash.ts';
import { ConfigError, InfraError } from '../../util/errors.ts';
import { entryKind, isFlush, isFua, type WriteLog } from './format.ts';
import { ImageIdentity, type LogDigest } from './digest.ts';
import type { AckPosition } from './record.ts';

/**
 * Crash states drawn from a write log, each a recipe for an image: the
 * image after entries [0, base), plus `apply` on top.
 *
 * - prefix: everything completed up to a point, the kill model and fstests'
 *   (generic/482 checks every FUA): at each flush, each FUA write, each
 *   step acknowledgement, and the log's end;
 * - power-loss: inside one flush epoch (the writes completed since the last
 *   flush), some writes lost, CrashMonkey's model: the disk's volatile cache
 *   may drop any write no flush has covered. Variants: `cut` (the epoch's
 *   writes up to one, the rest lost: power failed at that moment), `drop`
 *   (one write lost), `subset` (a seeded random set lost) and `torn` (power
 *   failed inside a multi-sector write: a prefix of its sectors landed).
 *   A FUA write is durable once complete and is never dropped.
 *
 * Epoch k holds the writes after the (k-1)-th flush entry and before the
 * k-th; the writes after the last flush form the open epoch `end`.
 */
export type StateKind = 'prefix' | 'power-loss';
export type StateVariant = 'flush' | 'fua' | 'ack' | 'end' | 'cut' | 'drop' | 'subset' | 'torn';

export interface WriteRef {
  /** Stable: a hash of sector and data, with `.2`, `.3` for repeats of the same write in one epoch. */
  id: string;
  index: number;
  sector: number;
  nrSectors: number;
}

/** A crash state the planner chose from a write log: which entries make its image, before crash-state.ts's CrashState is built from it. */
export interface PlannedState {
  /** Unique within the plan, e.g. `flush-17`, `ack-sync`, `flush-17-drop-3a9f01c2`. */
  name: string;
  kind: StateKind;
  variant: StateVariant;
  /** The flush epoch: k for the state at or inside the epoch closed by the k-th flush; flushCount + 1 for the open end. */
  epoch: number;
  /** The state stands at this log position: entries [0, position) had completed when it crashed (the dropped ones among them lost). */
  position: number;
  /** The image to start from: entries [0, base) replayed. */
  base: number;
  /** Applied on that image, in log order; a torn write keeps only `keepSectors`. */
  apply: Array<{ index: number; keepSectors?: number }>;
  /** Writes of the epoch that did not reach the disk (power-loss only). */
  dropped: WriteRef[];
  torn?: WriteRef & { keptSectors: number };
  /** Steps the agent had acknowledged by `position`: their sync/fsync/umount had completed. */
  acksBefore: string[];
  /** Identity of the image's content (hex): equal keys, equal images. */
  key: string;
}

export interface EpochInfo {
  epoch: number;
  label: string;
  /** First position of the epoch (just after the previous flush). */
  base: number;
  /** Index of the flush entry that closes it, or the log's length for the open end. */
  end: number;
  writes: number;
  closed: boolean;
}

export interface StatePlan {
  states: PlannedState[];
  epochs: EpochInfo[];
  counts: {
    prefix: number;
    powerLoss: number;
    /** Candidates identical to a state already planned (same blocks, same bytes). */
    duplicates: number;
    /** Candidates left out by the per-epoch or total budget (a candidate the per-epoch budget never examined may have been a duplicate). */
    overBudget: number;
  };
}

export interface GenerateOptions {
  /** Seed of the random subsets and of the choice among candidates over budget. Default 1. */
  seed?: number;
  /** Prefix states: at every boundary (default) or none. */
  prefixes?: 'all' | 'none';
  /** Most power-loss states per epoch (0: none). Default 8. */
  perEpoch?: number;
  /** Most states in all. Default unlimited. Prefix states come first; if they alone exceed it they are thinned evenly. */
  total?: number;
  /** Seeded random subsets tried per epoch. Default 4. */
  randomSubsets?: number;
  /** Also torn writes: writes longer than `tornUnitSectors` cut to about half, on a unit boundary. Default false. */
  torn?: boolean;
  /** Sectors that land atomically (default 8: a 4 KiB physical block). */
  tornUnitSectors?: number;
  /** Keep identical states (for tests of the dedupe). Default true. */
  dedupe?: boolean;
}

/** Stable ids for writes of one epoch (given by entry index, in log order): repeats of the same write numbered `.2`, `.3`. */
export function writeRefs(digest: LogDigest, indices: readonly number[]): WriteRef[] {
  const seenIds = new Map<string, number>();
  return indices.map((i) => {
    const d = digest.writes.get(i);
    if (!d) throw new InfraError(`log entry ${i} is not a write`);
    const n = (seenIds.get(d.contentId) ?? 0) + 1;
    seenIds.set(d.contentId, n);
    return { id: n > 1 ? `${d.contentId}.${n}` : d.contentId, index: i, sector: d.entry.sector, nrSectors: d.entry.nrSectors };
  });
}

/** The writes (and discards) of the epoch a plan's EpochInfo describes, with their stable ids. */
export function epochWrites(digest: LogDigest, epoch: Pick<EpochInfo, 'base' | 'end'>): WriteRef[] {
  const idx: number[] = [];
  for (let i = epoch.base; i < epoch.end; i++) if (digest.writes.has(i)) idx.push(i);
  return writeRefs(digest, idx);
}

/** A small seeded PRNG (mulberry32): the same seed gives the same states on every machine. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(xs: readonly T[], rnd: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

interface Candidate extends Omit<PlannedState, 'key' | 'acksBefore'> {
  keyBig: bigint;
}

/**
 * Plan the crash states of a log. `acks` place step acknowledgements
 * (record.ts ackPositions). Deterministic for a given log, acks and options.
 */
export function generateStates(digest: LogDigest, acks: readonly AckPosition[], opts: GenerateOptions = {}): StatePlan {
  const log: WriteLog = digest.log;
  const seed = opts.seed ?? 1;
  const perEpoch = opts.perEpoch ?? 8;
  const total = opts.total ?? Number.POSITIVE_INFINITY;
  const subsets = opts.randomSubsets ?? 4;
  const unit = opts.tornUnitSectors ?? 8;
  const dedupe = opts.dedupe ?? true;
  if (perEpoch < 0 || total < 0 || subsets < 0 || unit < 1) throw new ConfigError('crash-state budgets must be non-negative (and the torn unit at least one sector)');

  const entries = log.entries;
  const identity = new ImageIdentity(digest);
  const seen = new Set<bigint>();
  const prefixStates: Candidate[] = [];
  const powerLossByEpoch: Candidate[][] = [];
  const epochs: EpochInfo[] = [];
  let duplicates = 0;
  let overBudget = 0;
  const fresh = (k: bigint) => {
    if (!dedupe) return true;
    if (seen.has(k)) {
      duplicates++;
      return false;
    }
    seen.add(k);
    return true;
  };
  const ackAt = new Map<number, AckPosition[]>();
  for (const a of acks) ackAt.set(a.position, [...(ackAt.get(a.position) ?? []), a]);

  let base = 0;
  let epoch = 1;
  // Identity of the empty log: the base itself (prefix states at position 0 are the base: not a crash state worth checking).
  seen.add(identity.key);
  while (base <= entries.length) {
    // The epoch runs to the next flush entry (exclusive) or the log's end.
    let end = base;
    while (end < entries.length && !isFlush(entries[end]!)) end++;
    const closed = end < entries.length;
    const label = closed ? `flush-${epoch}` : 'end';
    const writeIdx: number[] = [];
    for (let i = base; i < end; i++) {
      const k = entryKind(entries[i]!);
      if (k === 'write' || k === 'discard') writeIdx.push(i);
    }
    // A flush entry that carries data (Linux dm-log-writes logs a REQ_PREFLUSH bio with its payload;
    // QEMU never does) is taken as fstests takes it: its data is part of the prefix at the flush.
    const flushCarriesData = closed && entryKind(entries[end]!) === 'write';
    epochs.push({ epoch, label, base, end, writes: writeIdx.length, closed });

    const refs = new Map(writeRefs(digest, writeIdx).map((r) => [r.index, r]));
    const kept = (from: number, upTo: number) => writeIdx.filter((i) => i >= from && i < upTo).map((index) => ({ index }));

    // Prefix states of this epoch, in log order: acks and FUA writes inside, then the closing flush (or the end).
    if ((opts.prefixes ?? 'all') === 'all') {
      const stops: Array<{ position: number; variant: StateVariant; name: string }> = [];
      for (let p = base + 1; p <= end; p++) {
        for (const a of ackAt.get(p) ?? []) stops.push({ position: p, variant: 'ack', name: `ack-${a.name}` });
        const e = entries[p - 1]!;
        if (p - 1 >= base && p - 1 < end && isFua(e)) stops.push({ position: p, variant: 'fua', name: `fua-${refs.get(p - 1)?.id ?? p - 1}` });
      }
      if (closed) {
        stops.push({ position: end + 1, variant: 'flush', name: label });
        for (const a of ackAt.get(end + 1) ?? []) stops.push({ position: end + 1, variant: 'ack', name: `ack-${a.name}` });
      } else if (end > base) stops.push({ position: end, variant: 'end', name: 'end' });
      for (const s of stops) {
        const upTo = Math.min(s.position, end);
        const k = identity.keyWith(kept(base, upTo).concat(flushCarriesData && s.position > end ? [{ index: end }] : []));
        if (!fresh(k)) continue;
        prefixStates.push({ name: s.name, kind: 'prefix', variant: s.variant, epoch, position: s.position, base: s.position, apply: [], dropped: [], keyBig: k });
      }
    }

    // Power-loss candidates: fork at the epoch's base, apply what survived. Each is only
    // described here; its image identity (O(sectors of the epoch)) is computed when the
    // budget reaches it, so an epoch of thousands of writes costs what its budget asks for.
    interface Spec {
      variant: StateVariant;
      suffix: string;
      position: number;
      apply: () => Array<{ index: number; keepSectors?: number }>;
      dropped: () => number[];
      torn?: { index: number; kept: number };
    }
    const specs: Spec[] = [];
    const droppable = writeIdx.filter((i) => !isFua(entries[i]!));
    if (perEpoch > 0 && droppable.length) {
      // cut: power fails just before write i; everything from i on is lost.
      for (const i of droppable) {
        if (i === writeIdx[0]) continue; // nothing survives: the previous flush's prefix
        specs.push({ variant: 'cut', suffix: `cut-${refs.get(i)!.id}`, position: i, apply: () => kept(base, i), dropped: () => writeIdx.filter((j) => j >= i) });
      }
      // drop: one write lost, the rest of the epoch landed.
      for (const i of droppable) {
        specs.push({ variant: 'drop', suffix: `drop-${refs.get(i)!.id}`, position: end, apply: () => writeIdx.filter((j) => j !== i).map((index) => ({ index })), dropped: () => [i] });
      }
      // subset: seeded random sets, each write lost with probability 1/2.
      const rnd = prng((seed * 0x9e3779b1) ^ epoch);
      for (let r = 0; r < subsets && droppable.length > 1; r++) {
        const lost = new Set(droppable.filter(() => rnd() < 0.5));
        if (lost.size === 0 || lost.size === droppable.length) continue;
        const lostIds = [...lost].map((i) => refs.get(i)!.id).sort();
        specs.push({ variant: 'subset', suffix: `subset-${sha256(lostIds.join(',')).slice(0, 8)}`, position: end, apply: () => writeIdx.filter((j) => !lost.has(j)).map((index) => ({ index })), dropped: () => [...lost] });
      }
      // torn: power fails inside a long write: its first sectors landed, nothing after it.
      if (opts.torn) {
        for (const i of droppable) {
          const n = entries[i]!.nrSectors;
          if (n <= unit) continue;
          const keep = Math.max(unit, Math.floor(n / 2 / unit) * unit);
          if (keep >= n) continue;
          specs.push({
            variant: 'torn',
            suffix: `torn-${refs.get(i)!.id}-${keep}of${n}`,
            position: i,
            apply: () => [...kept(base, i), { index: i, keepSectors: keep }],
            dropped: () => writeIdx.filter((j) => j > i),
            torn: { index: i, kept: keep },
          });
        }
      }
    }
    // The epoch's budget: round robin over the variants, each in seeded order; a candidate identical
    // to a state already planned (a prefix, or another candidate) is skipped for the next.
    const byVariant = (['drop', 'cut', 'subset', 'torn'] as const).map((v) => shuffled(specs.filter((c) => c.variant === v), prng(seed + epoch * 7919 + v.length)));
    const chosen: Candidate[] = [];
    while (chosen.length < perEpoch && byVariant.some((l) => l.length)) {
      for (const list of byVariant) {
        if (chosen.length >= perEpoch) break;
        const spec = list.shift();
        if (!spec) continue;
        const apply = spec.apply();
        const k = identity.keyWith(apply);
        if (!fresh(k)) continue;
        chosen.push({
          name: `${label}-${spec.suffix}`,
          kind: 'power-loss',
          variant: spec.variant,
          epoch,
          position: spec.position,
          base,
          apply,
          dropped: spec.dropped().map((i) => refs.get(i)!),
          ...(spec.torn ? { torn: { ...refs.get(spec.torn.index)!, keptSectors: spec.torn.kept } } : {}),
          keyBig: k,
        });
      }
    }
    // Left unexamined (some may have been duplicates).
    overBudget += byVariant.reduce((n, l) => n + l.length, 0);
    // In the order chosen: a total budget takes each epoch's first choices first.
    powerLossByEpoch.push(chosen);

    // Advance the identity over the epoch and its flush.
    for (const i of writeIdx) identity.apply(i);
    if (flushCarriesData) identity.apply(end);
    // A log that ends with its flush has no open epoch after it.
    if (!closed || end + 1 === entries.length) break;
    base = end + 1;
    epoch++;
  }

  // The total budget: prefix states first (thinned evenly if they alone are too many), then power-loss round robin over epochs.
  let prefix = prefixStates;
  if (prefix.length > total) {
    const keep = Math.floor(total);
    const picked: Candidate[] = [];
    for (let i = 0; i < keep; i++) picked.push(prefix[Math.floor(((i + 1) * prefix.length) / keep) - 1]!);
    overBudget += prefix.length - picked.length;
    prefix = picked;
  }
  let room = Math.max(0, total - prefix.length);
  const powerLoss: Candidate[] = [];
  const queues = powerLossByEpoch.map((l) => [...l]);
  const available = queues.reduce((n, q) => n + q.length, 0);
  while (room > 0 && queues.some((q) => q.length)) {
    for (const q of queues) {
      const c = q.shift();
      if (c && room > 0) {
        powerLoss.push(c);
        room--;
      }
    }
  }
  overBudget += available - powerLoss.length;

  const all = [...prefix, ...powerLoss].sort((a, b) => a.base - b.base || a.position - b.position || (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === 'prefix' ? -1 : 1));
  const names = new Map<string, number>();
  const states: PlannedState[] = all.map(({ keyBig, ...c }) => {
    const n = (names.get(c.name) ?? 0) + 1;
    names.set(c.name, n);
    return {
      ...c,
      name: n > 1 ? `${c.name}~${n}` : c.name,
      acksBefore: acks.filter((a) => a.position <= c.position).map((a) => a.name),
      key: keyBig.toString(16).padStart(32, '0'),
    };
  });
  return { states, epochs, counts: { prefix: prefix.length, powerLoss: powerLoss.length, duplicates, overBudget } };
}
