import { sha256 } from '../../util/hash.ts';
import { ConfigError, InfraError } from '../../util/errors.ts';
import { entryKind, isFlush, isFua, type WriteLog } from './format.ts';
import { ImageIdentity, type LogDigest } from './digest.ts';
import type { AckPosition } from './record.ts';
import type { StepKind } from '../../scenario/model.ts';

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
    /** Candidates identical to a state already planned (same blocks, same bytes, held to the same expectations). */
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

/** The options with their defaults. */
interface Budget {
  seed: number;
  prefixes: 'all' | 'none';
  perEpoch: number;
  total: number;
  subsets: number;
  torn: boolean;
  unit: number;
  dedupe: boolean;
}

function budgetOf(opts: GenerateOptions): Budget {
  const b: Budget = {
    seed: opts.seed ?? 1,
    prefixes: opts.prefixes ?? 'all',
    perEpoch: opts.perEpoch ?? 8,
    total: opts.total ?? Number.POSITIVE_INFINITY,
    subsets: opts.randomSubsets ?? 4,
    torn: opts.torn ?? false,
    unit: opts.tornUnitSectors ?? 8,
    dedupe: opts.dedupe ?? true,
  };
  if (b.perEpoch < 0 || b.total < 0 || b.subsets < 0 || b.unit < 1)
    throw new ConfigError('crash-state budgets must be non-negative (and the torn unit at least one sector)');
  return b;
}

/**
 * Steps whose acknowledgement claims nothing about the disk (the durability
 * ledger of crash/expectations.ts passes over them): a state after one
 * expects what the state before it expects.
 */
const claimlessSteps: ReadonlySet<StepKind> = new Set<StepKind>(['mount', 'sleep', 'sync-loop', 'flush-loop', 'sysctl']);

/**
 * What a state at a log position will be held to, as a key: the steps
 * acknowledged by then (expectations derive from them, source.ts
 * recordsAt) and whether it is the log's end (a clean power-off's last
 * state is the no-crash state).
 */
class ExpectationKeys {
  private readonly byPosition = new Map<number, string>();

  constructor(
    private readonly acks: readonly AckPosition[],
    private readonly logEnd: number,
  ) {}

  at(position: number): string {
    let k = this.byPosition.get(position);
    if (k === undefined) {
      const acked = this.acks.filter((a) => a.position <= position && !claimlessSteps.has(a.kind)).map((a) => a.name);
      k = `${acked.join('\0')}${position >= this.logEnd ? '\0<end>' : ''}`;
      this.byPosition.set(position, k);
    }
    return k;
  }
}

/**
 * The states planned so far, by image and expectations: a candidate with
 * the image of a planned state and the same expectations is a duplicate
 * (unless dedupe is off). The same image held to stronger expectations (a
 * later fsync acknowledged) is another state: keying on the image alone
 * kept the earlier, weaker one and never checked the fsync.
 */
class PlannedKeys {
  private readonly seen = new Set<string>();
  duplicates = 0;

  constructor(
    private readonly dedupe: boolean,
    private readonly expected: ExpectationKeys,
    empty: bigint,
  ) {
    // The empty log is the base itself: a prefix state at position 0 is not a crash state worth checking.
    this.seen.add(this.keyOf(empty, 0));
  }

  private keyOf(image: bigint, position: number): string {
    return `${image.toString(16)}/${this.expected.at(position)}`;
  }

  /** True (and remembered) for an image and expectations not planned yet. */
  fresh(image: bigint, position: number): boolean {
    if (!this.dedupe) return true;
    const k = this.keyOf(image, position);
    if (this.seen.has(k)) {
      this.duplicates++;
      return false;
    }
    this.seen.add(k);
    return true;
  }
}

/** One flush epoch: the entries [base, end), closed by the flush at `end` unless it is the log's open tail. */
interface Epoch {
  info: EpochInfo;
  /** Entry indices of its writes and discards, in log order. */
  writeIdx: number[];
  refs: Map<number, WriteRef>;
  /**
   * A flush entry that carries data (Linux dm-log-writes logs a REQ_PREFLUSH bio with its payload;
   * QEMU never does) is taken as fstests takes it: its data is part of the prefix at the flush.
   */
  flushCarriesData: boolean;
}

/** The epoch numbered `epoch` that starts at entry `base`: it runs to the next flush entry (exclusive) or the log's end. */
function epochAt(digest: LogDigest, base: number, epoch: number): Epoch {
  const entries = digest.log.entries;
  let end = base;
  while (end < entries.length && !isFlush(entries[end]!)) end++;
  const closed = end < entries.length;
  const writeIdx: number[] = [];
  for (let i = base; i < end; i++) {
    const k = entryKind(entries[i]!);
    if (k === 'write' || k === 'discard') writeIdx.push(i);
  }
  return {
    info: { epoch, label: closed ? `flush-${epoch}` : 'end', base, end, writes: writeIdx.length, closed },
    writeIdx,
    refs: new Map(writeRefs(digest, writeIdx).map((r) => [r.index, r])),
    flushCarriesData: closed && entryKind(entries[end]!) === 'write',
  };
}

/** The epoch's writes in [from, upTo), as entries to apply. */
function keptWrites(ep: Epoch, from: number, upTo: number): Array<{ index: number }> {
  return ep.writeIdx.filter((i) => i >= from && i < upTo).map((index) => ({ index }));
}

/** Where an epoch's prefix states stop, in log order: acks and FUA writes inside, then the closing flush (or the end). */
function prefixStops(
  ep: Epoch,
  entries: WriteLog['entries'],
  ackAt: Map<number, AckPosition[]>,
): Array<{ position: number; variant: StateVariant; name: string }> {
  const { base, end, closed, label } = ep.info;
  const stops: Array<{ position: number; variant: StateVariant; name: string }> = [];
  for (let p = base + 1; p <= end; p++) {
    for (const a of ackAt.get(p) ?? []) stops.push({ position: p, variant: 'ack', name: `ack-${a.name}` });
    const e = entries[p - 1]!;
    if (p - 1 >= base && p - 1 < end && isFua(e))
      stops.push({ position: p, variant: 'fua', name: `fua-${ep.refs.get(p - 1)?.id ?? p - 1}` });
  }
  if (closed) {
    // A flush that carries data (REQ_PREFLUSH with a payload: a jbd2 commit block) may crash after its preflush,
    // before its data: the epoch whole, the data not there. Its flush prefix below has the data.
    if (ep.flushCarriesData) stops.push({ position: end, variant: 'flush', name: `${label}-preflush` });
    stops.push({ position: end + 1, variant: 'flush', name: label });
    for (const a of ackAt.get(end + 1) ?? []) stops.push({ position: end + 1, variant: 'ack', name: `ack-${a.name}` });
  } else if (end > base) stops.push({ position: end, variant: 'end', name: 'end' });
  return stops;
}

/** The epoch's prefix states whose images are not planned yet. */
function prefixCandidates(
  ep: Epoch,
  entries: WriteLog['entries'],
  ackAt: Map<number, AckPosition[]>,
  identity: ImageIdentity,
  planned: PlannedKeys,
): Candidate[] {
  const { base, end, epoch } = ep.info;
  const out: Candidate[] = [];
  for (const s of prefixStops(ep, entries, ackAt)) {
    const upTo = Math.min(s.position, end);
    const k = identity.keyWith(
      keptWrites(ep, base, upTo).concat(ep.flushCarriesData && s.position > end ? [{ index: end }] : []),
    );
    if (!planned.fresh(k, s.position)) continue;
    out.push({
      name: s.name,
      kind: 'prefix',
      variant: s.variant,
      epoch,
      position: s.position,
      base: s.position,
      apply: [],
      dropped: [],
      keyBig: k,
    });
  }
  return out;
}

/**
 * A power-loss candidate: fork at the epoch's base, apply what survived. Only
 * described: its image identity (O(sectors of the epoch)) is computed when the
 * budget reaches it, so an epoch of thousands of writes costs what its budget asks for.
 */
interface PowerLossSpec {
  variant: StateVariant;
  suffix: string;
  position: number;
  apply: () => Array<{ index: number; keepSectors?: number }>;
  dropped: () => number[];
  torn?: { index: number; kept: number };
}

/**
 * Every power-loss candidate of an epoch. A complete FUA write is never lost
 * (drop, subset); power may still fail before or inside one (cut, torn).
 */
function powerLossSpecs(ep: Epoch, entries: WriteLog['entries'], budget: Budget): PowerLossSpec[] {
  const droppable = ep.writeIdx.filter((i) => !isFua(entries[i]!));
  if (budget.perEpoch <= 0 || !droppable.length) return [];
  return [
    ...cutSpecs(ep),
    ...dropSpecs(ep, droppable),
    ...subsetSpecs(ep, droppable, budget),
    ...(budget.torn ? tornSpecs(ep, ep.writeIdx, entries, budget.unit) : []),
  ];
}

/** cut: power fails just before write i (a FUA write too: it had not completed); everything from i on is lost. */
function cutSpecs(ep: Epoch): PowerLossSpec[] {
  const { base } = ep.info;
  const w = ep.writeIdx;
  // Cutting before the epoch's first write leaves nothing: the previous flush's prefix.
  return w
    .filter((i) => i !== w[0])
    .map((i) => ({
      variant: 'cut',
      suffix: `cut-${ep.refs.get(i)!.id}`,
      position: i,
      apply: () => keptWrites(ep, base, i),
      dropped: () => w.filter((j) => j >= i),
    }));
}

/** drop: one write lost, the rest of the epoch landed. */
function dropSpecs(ep: Epoch, droppable: number[]): PowerLossSpec[] {
  const w = ep.writeIdx;
  return droppable.map((i) => ({
    variant: 'drop',
    suffix: `drop-${ep.refs.get(i)!.id}`,
    position: ep.info.end,
    apply: () => w.filter((j) => j !== i).map((index) => ({ index })),
    dropped: () => [i],
  }));
}

/** subset: seeded random sets, each write lost with probability 1/2. */
function subsetSpecs(ep: Epoch, droppable: number[], budget: Budget): PowerLossSpec[] {
  const w = ep.writeIdx;
  const rnd = prng((budget.seed * 0x9e3779b1) ^ ep.info.epoch);
  const out: PowerLossSpec[] = [];
  for (let r = 0; r < budget.subsets && droppable.length > 1; r++) {
    const lost = new Set(droppable.filter(() => rnd() < 0.5));
    if (lost.size === 0 || lost.size === droppable.length) continue;
    const lostIds = [...lost].map((i) => ep.refs.get(i)!.id).sort();
    out.push({
      variant: 'subset',
      suffix: `subset-${sha256(lostIds.join(',')).slice(0, 8)}`,
      position: ep.info.end,
      apply: () => w.filter((j) => !lost.has(j)).map((index) => ({ index })),
      dropped: () => [...lost],
    });
  }
  return out;
}

/** torn: power fails inside a long write (FUA or not: it had not completed): its first sectors (about half, on a unit boundary) landed, nothing after it. */
function tornSpecs(ep: Epoch, writes: number[], entries: WriteLog['entries'], unit: number): PowerLossSpec[] {
  const out: PowerLossSpec[] = [];
  for (const i of writes) {
    const n = entries[i]!.nrSectors;
    if (n <= unit) continue;
    const keep = Math.max(unit, Math.floor(n / 2 / unit) * unit);
    if (keep >= n) continue;
    out.push({
      variant: 'torn',
      suffix: `torn-${ep.refs.get(i)!.id}-${keep}of${n}`,
      position: i,
      apply: () => [...keptWrites(ep, ep.info.base, i), { index: i, keepSectors: keep }],
      dropped: () => ep.writeIdx.filter((j) => j > i),
      torn: { index: i, kept: keep },
    });
  }
  return out;
}

/**
 * The epoch's budget: round robin over the variants, each in seeded order; a candidate identical
 * to a state already planned (a prefix, or another candidate) is skipped for the next.
 * `unexamined` counts the candidates left over (some may have been duplicates).
 */
function choosePowerLoss(
  ep: Epoch,
  specs: PowerLossSpec[],
  budget: Budget,
  identity: ImageIdentity,
  planned: PlannedKeys,
): { chosen: Candidate[]; unexamined: number } {
  const { epoch, label, base } = ep.info;
  const byVariant = (['drop', 'cut', 'subset', 'torn'] as const).map((v) =>
    shuffled(
      specs.filter((c) => c.variant === v),
      prng(budget.seed + epoch * 7919 + v.length),
    ),
  );
  const chosen: Candidate[] = [];
  while (chosen.length < budget.perEpoch && byVariant.some((l) => l.length)) {
    for (const list of byVariant) {
      if (chosen.length >= budget.perEpoch) break;
      const spec = list.shift();
      if (!spec) continue;
      const apply = spec.apply();
      const k = identity.keyWith(apply);
      if (!planned.fresh(k, spec.position)) continue;
      chosen.push({
        name: `${label}-${spec.suffix}`,
        kind: 'power-loss',
        variant: spec.variant,
        epoch,
        position: spec.position,
        base,
        apply,
        dropped: spec.dropped().map((i) => ep.refs.get(i)!),
        ...(spec.torn ? { torn: { ...ep.refs.get(spec.torn.index)!, keptSectors: spec.torn.kept } } : {}),
        keyBig: k,
      });
    }
  }
  return { chosen, unexamined: byVariant.reduce((n, l) => n + l.length, 0) };
}

/** Prefix states thinned evenly to at most `total`. */
function thinEvenly(prefix: Candidate[], total: number): Candidate[] {
  if (prefix.length <= total) return prefix;
  const keep = Math.floor(total);
  const picked: Candidate[] = [];
  for (let i = 0; i < keep; i++) picked.push(prefix[Math.floor(((i + 1) * prefix.length) / keep) - 1]!);
  return picked;
}

/** Up to `room` power-loss states, round robin over the epochs, each epoch's first choices first. */
function roundRobin(byEpoch: Candidate[][], room: number): Candidate[] {
  const out: Candidate[] = [];
  const queues = byEpoch.map((l) => [...l]);
  while (room > 0 && queues.some((q) => q.length)) {
    for (const q of queues) {
      const c = q.shift();
      if (c && room > 0) {
        out.push(c);
        room--;
      }
    }
  }
  return out;
}

/** The chosen states in log order, named uniquely (`~2` for a repeated name), with the acks before each. */
function plannedStates(chosen: Candidate[], acks: readonly AckPosition[]): PlannedState[] {
  const all = [...chosen].sort(
    (a, b) =>
      a.base - b.base ||
      a.position - b.position ||
      (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === 'prefix' ? -1 : 1),
  );
  const names = new Map<string, number>();
  return all.map(({ keyBig, ...c }) => {
    const n = (names.get(c.name) ?? 0) + 1;
    names.set(c.name, n);
    return {
      ...c,
      name: n > 1 ? `${c.name}~${n}` : c.name,
      acksBefore: acks.filter((a) => a.position <= c.position).map((a) => a.name),
      key: keyBig.toString(16).padStart(32, '0'),
    };
  });
}

/**
 * Plan the crash states of a log. `acks` place step acknowledgements
 * (record.ts ackPositions). Deterministic for a given log, acks and options.
 */
export function generateStates(digest: LogDigest, acks: readonly AckPosition[], opts: GenerateOptions = {}): StatePlan {
  const budget = budgetOf(opts);
  const entries = digest.log.entries;
  const identity = new ImageIdentity(digest);
  const planned = new PlannedKeys(budget.dedupe, new ExpectationKeys(acks, entries.length), identity.key);
  const ackAt = new Map<number, AckPosition[]>();
  for (const a of acks) ackAt.set(a.position, [...(ackAt.get(a.position) ?? []), a]);

  const prefixStates: Candidate[] = [];
  const powerLossByEpoch: Candidate[][] = [];
  const epochs: EpochInfo[] = [];
  let overBudget = 0;
  for (let base = 0, epoch = 1; base <= entries.length; epoch++) {
    const ep = epochAt(digest, base, epoch);
    epochs.push(ep.info);
    if (budget.prefixes === 'all') prefixStates.push(...prefixCandidates(ep, entries, ackAt, identity, planned));
    const { chosen, unexamined } = choosePowerLoss(ep, powerLossSpecs(ep, entries, budget), budget, identity, planned);
    overBudget += unexamined;
    powerLossByEpoch.push(chosen);
    // Advance the identity over the epoch and its flush.
    for (const i of ep.writeIdx) identity.apply(i);
    if (ep.flushCarriesData) identity.apply(ep.info.end);
    // A log that ends with its flush has no open epoch after it.
    if (!ep.info.closed || ep.info.end + 1 === entries.length) break;
    base = ep.info.end + 1;
  }

  // The total budget: prefix states first (thinned evenly if they alone are too many), then power-loss round robin over epochs.
  const prefix = thinEvenly(prefixStates, budget.total);
  const powerLoss = roundRobin(powerLossByEpoch, Math.max(0, budget.total - prefix.length));
  overBudget += prefixStates.length - prefix.length + powerLossByEpoch.reduce((n, q) => n + q.length, 0) - powerLoss.length;
  const states = plannedStates([...prefix, ...powerLoss], acks);
  return {
    states,
    epochs,
    counts: { prefix: prefix.length, powerLoss: powerLoss.length, duplicates: planned.duplicates, overBudget },
  };
}
