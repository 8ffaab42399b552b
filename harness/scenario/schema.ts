import { z } from 'zod';
import { findingClasses } from '../findings/finding.ts';
import { sha256 } from '../util/hash.ts';
import { maxSampledHits } from './limits.ts';
import { didYouMean } from '../util/suggest.ts';
import { stepTimeoutMs, writerModes, type HoldPoint, type KillPoint, type Step, type StepKind } from './model.ts';

/**
 * The scenario file format. Steps and crash points are written as
 * one-key maps (`- migrate: /shapes/f`) or bare words (`- sync`); this file
 * holds the shapes of their arguments, each transformed into the model's
 * step or kill points. parse.ts picks the schema by keyword and maps its
 * errors to file:line.
 */
const nonNegInt = z.number().int().nonnegative();
const posInt = z.number().int().positive();
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'use letters, digits, ".", "_" or "-"');
/** Absolute and normal: no "." or ".." parts, no "//", no trailing "/" (a path that leaves /mnt must not reach the guest). */
const absPath = z
  .string()
  .regex(/^(\/[^/\0]+)+$/, 'must be an absolute path inside the test filesystem (e.g. /shapes/f), without "//" or a trailing "/"')
  .refine((p) => !p.split('/').some((part) => part === '.' || part === '..'), 'must not contain "." or ".." parts');
/** What migrate may name: a path as above, or "/" for the whole filesystem (chattr -R +e / on the mount point). */
const migratePath = z
  .string()
  .regex(
    /^(\/|(\/[^/\0]+)+)$/,
    'must be an absolute path inside the test filesystem (e.g. /shapes/f, or / for all of it), without "//" or a trailing "/"',
  )
  .refine((p) => !p.split('/').some((part) => part === '.' || part === '..'), 'must not contain "." or ".." parts');
const mountOption = z.string().regex(/^[A-Za-z0-9_=.,-]+$/, 'mount options are words like commit=1 or noatime');

/** Most vCPUs a scenario may ask for (the guest kernels are built with NR_CPUS=4). */
const maxCpus = 4;

/** Every step takes a name, `may_fail: true` (a failure in the guest is then no finding) and `cpu: N` (pinned to vCPU N; parse.ts checks it against `cpus:`). */
const common = { name: name.optional(), may_fail: z.boolean().optional(), cpu: nonNegInt.max(maxCpus - 1).optional() };

/**
 * The guest settings a scenario may change (`sysctl:`): writeback timing and
 * thresholds, nothing that could reach beyond the test. Written to
 * /proc/sys/<key with dots as slashes>, so each must exist there.
 */
const guestSysctls = [
  'vm.dirty_background_bytes',
  'vm.dirty_background_ratio',
  'vm.dirty_bytes',
  'vm.dirty_expire_centisecs',
  'vm.dirty_ratio',
  'vm.dirty_writeback_centisecs',
  'vm.dirtytime_expire_seconds',
  'vm.laptop_mode',
  'vm.vfs_cache_pressure',
] as const;

/** `{ vm.dirty_expire_centisecs: 100, ... }`: allowed keys, non-negative integer values; an unknown key is named at its line with close matches. */
export const sysctlSettings = z
  .record(z.string(), nonNegInt)
  .superRefine((m, ctx) => {
    const known: readonly string[] = guestSysctls;
    for (const k of Object.keys(m)) {
      if (!known.includes(k))
        ctx.addIssue({
          code: 'custom',
          path: [k],
          message: `unknown setting "${k}".${didYouMean(k, known)} Settings: ${known.join(', ')}`,
        });
    }
  })
  .refine((m) => Object.keys(m).length > 0, 'give at least one setting, e.g. { vm.dirty_expire_centisecs: 100 }');

/** Omit over each member of a union, which stays a union. */
type OmitEach<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * A step as its own arguments give it. Its name (`name:`, else its kind,
 * numbered from the second on) and a write's content seed depend on the
 * steps around it: parse.ts adds them.
 */
export type StepDraft = OmitEach<Step, 'name' | 'seed'> & { name?: string };

/** `name:` when given; `mayFail` only when true, so that `may_fail: false` is the default, not recorded; `cpu` when given. */
function draftCommon(a: { name?: string | undefined; may_fail?: boolean | undefined; cpu?: number | undefined }): {
  name?: string;
  mayFail?: boolean;
  cpu?: number;
} {
  return {
    ...(a.name !== undefined ? { name: a.name } : {}),
    ...(a.may_fail ? { mayFail: true } : {}),
    ...(a.cpu !== undefined ? { cpu: a.cpu } : {}),
  };
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Each step's arguments, and the step they make. */
export const stepSchemas = {
  mount: z.strictObject({ ...common, options: z.union([mountOption, z.array(mountOption)]).optional() }).transform((a) => ({
    ...draftCommon(a),
    kind: 'mount' as const,
    options: list(a.options)
      .flatMap((o) => o.split(','))
      .filter(Boolean),
  })),
  umount: z.strictObject({ ...common }).transform((a) => ({ ...draftCommon(a), kind: 'umount' as const })),
  migrate: z
    .strictObject({
      ...common,
      paths: z.union([migratePath, z.array(migratePath).min(1)]),
      recursive: z.boolean().optional(),
      /** extents (default): chattr +e; blocks: chattr -e, back to a block map (ext4_ind_migrate). */
      to: z.enum(['extents', 'blocks']).optional(),
    })
    .transform((a) => ({
      ...draftCommon(a),
      kind: 'migrate' as const,
      paths: list(a.paths),
      recursive: Boolean(a.recursive),
      ...(a.to === 'blocks' ? { to: 'blocks' as const } : {}),
    })),
  write: z
    .strictObject({
      ...common,
      path: absPath,
      size: posInt,
      offset: nonNegInt.optional(),
      append: z.boolean().optional(),
    })
    .transform((a) => ({
      ...draftCommon(a),
      kind: 'write' as const,
      path: a.path,
      size: a.size,
      offset: a.offset ?? 0,
      append: Boolean(a.append),
    })),
  fsync: z
    .strictObject({ ...common, path: absPath })
    .transform((a) => ({ ...draftCommon(a), kind: 'fsync' as const, path: a.path })),
  sync: z.strictObject({ ...common }).transform((a) => ({ ...draftCommon(a), kind: 'sync' as const })),
  'drop-caches': z.strictObject({ ...common }).transform((a) => ({ ...draftCommon(a), kind: 'drop-caches' as const })),
  'sync-loop': z
    .strictObject({ ...common, action: z.enum(['start', 'stop']) })
    .transform((a) => ({ ...draftCommon(a), kind: 'sync-loop' as const, action: a.action })),
  writer: z
    .strictObject({
      ...common,
      mode: z.enum(writerModes),
      path: absPath,
      size: posInt.optional(),
      /** Rewriters: where the rewritten range starts (a multiple of 4096; past the end of the file appends to it). */
      offset: nonNegInt.refine((n) => n % 4096 === 0, 'a rewriter range starts at a multiple of the page size (4096)').optional(),
      /** mmap-holes: microseconds between stores. */
      pace_us: nonNegInt.optional(),
      action: z.enum(['start', 'stop']),
    })
    .refine((a) => !(a.mode === 'mmap-holes' && a.offset), {
      message: 'mmap-holes stores into every hole page: it takes no offset',
      path: ['offset'],
    })
    .transform((a) => ({
      ...draftCommon(a),
      kind: 'writer' as const,
      mode: a.mode,
      path: a.path,
      size: a.size ?? 1 << 20,
      ...(a.offset ? { offset: a.offset } : {}),
      paceUs: a.pace_us ?? 500,
      action: a.action,
    })),
  sleep: z.strictObject({ ...common, ms: nonNegInt }).transform((a) => ({ ...draftCommon(a), kind: 'sleep' as const, ms: a.ms })),
  'flush-loop': z
    .strictObject({
      ...common,
      action: z.enum(['start', 'stop']),
      /** An fsync of the device each round (writes and a cache flush), or false: sync_file_range (writes only, no flush in a write log). */
      device_flush: z.boolean().optional(),
      pause_ms: nonNegInt.max(10_000).optional(),
    })
    .transform((a) => ({
      ...draftCommon(a),
      kind: 'flush-loop' as const,
      action: a.action,
      deviceFlush: a.device_flush ?? true,
      pauseMs: a.pause_ms ?? 10,
    })),
  sysctl: z
    .strictObject({ ...common, settings: sysctlSettings })
    .transform((a) => ({ ...draftCommon(a), kind: 'sysctl' as const, settings: a.settings })),
} satisfies { [K in StepKind]: z.ZodType<Extract<StepDraft, { kind: K }>> };

/** What a bare scalar after a step keyword means (`- migrate: /f`, `- sleep: 50`). */
export const stepScalarKey: Partial<Record<StepKind, string>> = {
  migrate: 'paths',
  fsync: 'path',
  sleep: 'ms',
  mount: 'options',
  'sync-loop': 'action',
  'flush-loop': 'action',
};

const kernelSymbol = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_.]*(\+(0x[0-9a-fA-F]+|[0-9]+))?$/, 'a kernel symbol, optionally +offset');

/** Each kill point's arguments, and the points they make (a generator makes several). */
export const killPointSchemas = {
  none: z.strictObject({}).transform((): KillPoint[] => [{ kind: 'none' }]),
  before: z.strictObject({ step: name }).transform(({ step }): KillPoint[] => [{ kind: 'before', step }]),
  after: z.strictObject({ step: name }).transform(({ step }): KillPoint[] => [{ kind: 'after', step }]),
  delay: z
    .strictObject({ step: name, ms: nonNegInt })
    .transform(({ step, ms }): KillPoint[] => [{ kind: 'delay', step, delayMs: ms }]),
  during: z
    .strictObject({ step: name, window_ms: posInt })
    .transform(({ step, window_ms }): KillPoint[] => [{ kind: 'during', step, windowMs: window_ms }]),
  kernel: z
    .strictObject({
      step: name,
      symbol: kernelSymbol,
      hit: posInt.optional(),
      then_hits: nonNegInt.optional(),
      delay_ms: nonNegInt.optional(),
      /** Then run on until this many jbd2 commits complete: makes the state at the stop durable. */
      then_commits: nonNegInt.optional(),
    })
    .transform((a): KillPoint[] => [
      {
        kind: 'kernel',
        step: a.step,
        ...splitSymbol(a.symbol),
        hit: a.hit ?? 1,
        thenHits: a.then_hits ?? 0,
        delayMs: a.delay_ms ?? 0,
        ...(a.then_commits ? { thenCommits: a.then_commits } : {}),
      },
    ]),
  commit: z.strictObject({ step: name, k: posInt }).transform(({ step, k }): KillPoint[] => [{ kind: 'commit', step, k }]),
  /** Generator: one point per journal commit k = 1..max completed during the step. */
  commits: z
    .strictObject({ step: name, max: posInt })
    .transform(({ step, max }): KillPoint[] => Array.from({ length: max }, (_, i) => ({ kind: 'commit', step, k: i + 1 }))),
  /** Generator: the first `first` hits of a symbol (hit 1..first), or `sample` seeded hits among the first `first`. */
  'kernel-hits': z
    .strictObject({
      step: name,
      symbol: z.string(),
      first: posInt,
      sample: posInt.optional(),
    })
    // Sampling scores each of the first `first` hits: bounded as the budgets are.
    .refine((a) => a.sample === undefined || a.first <= maxSampledHits, {
      message: `with sample, first is at most ${maxSampledHits} (every one of the first hits is scored to draw the sample)`,
      path: ['first'],
    })
    .transform(kernelHits),
} satisfies Record<string, z.ZodType<KillPoint[]>>;

/**
 * How many points a kill point item makes, from its arguments as written
 * (unchecked: a malformed one counts as 1 and its schema then refuses it),
 * and which argument says so.
 */
export function killPointCount(kind: keyof typeof killPointSchemas, args: unknown): { points: number; key?: string } {
  const a = (args ?? {}) as Record<string, unknown>;
  const n = (k: string): number | undefined =>
    typeof a[k] === 'number' && Number.isFinite(a[k]) && a[k] > 0 ? Math.floor(a[k]) : undefined;
  if (kind === 'commits') return n('max') !== undefined ? { points: n('max')!, key: 'max' } : { points: 1 };
  if (kind === 'kernel-hits') {
    const first = n('first');
    const sample = n('sample');
    if (sample !== undefined) return { points: first !== undefined ? Math.min(first, sample) : sample, key: 'sample' };
    return first !== undefined ? { points: first, key: 'first' } : { points: 1 };
  }
  return { points: 1 };
}

export const pointScalarKey: Partial<Record<keyof typeof killPointSchemas, string>> = { before: 'step', after: 'step' };

function splitSymbol(s: string): { symbol: string; offset: number } {
  const [symbol = s, off] = s.split('+');
  return { symbol, offset: off === undefined ? 0 : Number(off) };
}

function kernelHits(a: { step: string; symbol: string; first: number; sample?: number | undefined }): KillPoint[] {
  const { symbol, offset } = splitSymbol(a.symbol);
  let hits = Array.from({ length: a.first }, (_, i) => i + 1);
  if (a.sample !== undefined) hits = seededSample(hits, a.sample, `${symbol}/${a.first}`);
  return hits.map((hit) => ({ kind: 'kernel', step: a.step, symbol, offset, hit, thenHits: 0, delayMs: 0 }));
}

/** A stable sample: the same scenario expands to the same hits on every machine. */
function seededSample(items: number[], n: number, key: string): number[] {
  const scored = items.map((v) => [parseInt(sha256(`${key}/${v}`).slice(0, 8), 16), v] as const);
  return scored
    .sort((a, b) => a[0] - b[0])
    .slice(0, n)
    .map(([, v]) => v)
    .sort((a, b) => a - b);
}

const recoveryModes = ['e2fsck', 'kernel'] as const;

/** A hold's default time limit. */
const defaultHoldLimitMs = 3000;

/**
 * `hold: { step: migrate, symbol: ext4_ext_migrate, after-call: finish_range, hit: 1, until: { stores: 8 }, limit-ms: 3000 }`:
 * an interleaving held at a kernel point (model.ts HoldPoint). parse.ts
 * checks it against the steps, `cpus:` and the kill points.
 */
export const holdArgs = z
  .strictObject({
    step: name,
    symbol: kernelSymbol,
    /** Hold where `symbol` returns from its last direct call of this function. */
    'after-call': z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_.]*$/, 'a kernel function name')
      .optional(),
    hit: posInt.optional(),
    /** `stores: K`: until the background writers have reported K more stores (or rounds); absent: for the whole limit. */
    until: z.strictObject({ stores: posInt }).optional(),
    'limit-ms': posInt.max(stepTimeoutMs / 2).optional(),
  })
  .transform((a): HoldPoint => ({
    step: a.step,
    ...splitSymbol(a.symbol),
    ...(a['after-call'] !== undefined ? { afterCall: a['after-call'] } : {}),
    hit: a.hit ?? 1,
    ...(a.until ? { until: { marker: 'stores' as const, count: a.until.stores } } : {}),
    limitMs: a['limit-ms'] ?? defaultHoldLimitMs,
  }));

/**
 * `crash-states: { from: log, prefixes: all, power-loss: { per-epoch: 8, seed: 1 }, budget: 2000 }`:
 * crash states replayed from one recorded write log per repetition.
 */
export const crashStatesArgs = z.strictObject({
  from: z.literal('log', { error: 'crash states come from a recorded write log: write "from: log"' }),
  prefixes: z.enum(['all', 'none']).optional(),
  /** `none` (or false), or the map below. */
  'power-loss': z.unknown().optional(),
  budget: posInt.max(100_000).optional(),
  'kernel-sample': nonNegInt.max(1000).optional(),
  minimize: nonNegInt.max(1000).optional(),
  'minimize-tests': posInt.max(10_000).optional(),
  end: z.enum(['poweroff', 'kill']).optional(),
});

export const powerLossArgs = z.strictObject({
  'per-epoch': nonNegInt.max(10_000).optional(),
  seed: nonNegInt.optional(),
  /** Seeded random subsets of an epoch's writes tried per epoch. */
  subsets: nonNegInt.max(1000).optional(),
  torn: z.boolean().optional(),
});

export const scenarioTop = z.strictObject({
  name: name.optional(),
  description: z.string().optional(),
  /** Kernel lines a known bug was confirmed on ("6.1", "6.12"): every scenarios/known-bugs/ entry states them; reports show them. */
  'confirmed-on': z
    .array(z.string().regex(/^\d+\.\d+$/, 'a kernel line such as 6.1 or 6.12'))
    .min(1)
    .optional(),
  suite: name.optional(),
  /** A recipe name (vm-images/recipes/) or a recipe file path; or, instead, */
  recipe: z.string().min(1).optional(),
  /** a filesystem image file of one's own (relative to the scenario file). */
  image: z.string().min(1).optional(),
  /** Guest settings applied before the first step of every case (an implicit `sysctl` step). */
  sysctl: z.unknown().optional(),
  steps: z.array(z.unknown()).min(1),
  /** vCPUs of the guest (default 1); `hold:` and a step's `cpu:` need 2 or more. */
  cpus: posInt.max(maxCpus).optional(),
  hold: z.unknown().optional(),
  kill: z.array(z.unknown()).min(1).optional(),
  'crash-states': z.unknown().optional(),
  repeat: posInt.max(1000).optional(),
  recovery: z.union([z.enum(recoveryModes), z.array(z.enum(recoveryModes)).min(1)]).optional(),
  allow: z
    .strictObject({
      classes: z.array(z.enum(findingClasses)).optional(),
      codes: z.array(z.string()).optional(),
      /** Codes a known bug explains, allowed only on the kernel lines its scenarios/known-bugs/ entry was confirmed on. */
      'known-bugs': z
        .array(
          z.strictObject({
            entry: name,
            codes: z.array(z.string()).min(1),
            lines: z
              .array(z.string().regex(/^\d+\.\d+$/, 'a kernel line such as 6.1 or 6.12'))
              .min(1)
              .optional(),
            recovery: z.array(z.enum(recoveryModes)).min(1).optional(),
          }),
        )
        .optional(),
    })
    .optional(),
});
