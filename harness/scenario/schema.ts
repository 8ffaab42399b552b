import { z } from 'zod';
import { findingClasses } from '../findings/finding.ts';
import { writerModes } from './model.ts';

/**
 * The scenario file format. Steps and crash points are written as
 * one-key maps (`- migrate: /shapes/f`) or bare words (`- sync`); this file
 * holds the shapes of their arguments, parse.ts turns them into the model.
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
  .regex(/^(\/|(\/[^/\0]+)+)$/, 'must be an absolute path inside the test filesystem (e.g. /shapes/f, or / for all of it), without "//" or a trailing "/"')
  .refine((p) => !p.split('/').some((part) => part === '.' || part === '..'), 'must not contain "." or ".." parts');
const mountOption = z.string().regex(/^[A-Za-z0-9_=.,-]+$/, 'mount options are words like commit=1 or noatime');

/** Every step takes a name and `may_fail: true` (a failure in the guest is then no finding). */
const common = { name: name.optional(), may_fail: z.boolean().optional() };

export const stepArgs = {
  mount: z.strictObject({ ...common, options: z.union([mountOption, z.array(mountOption)]).optional() }),
  umount: z.strictObject({ ...common }),
  migrate: z.strictObject({
    ...common,
    paths: z.union([migratePath, z.array(migratePath).min(1)]),
    recursive: z.boolean().optional(),
  }),
  write: z.strictObject({
    ...common,
    path: absPath,
    size: posInt,
    offset: nonNegInt.optional(),
    append: z.boolean().optional(),
  }),
  fsync: z.strictObject({ ...common, path: absPath }),
  sync: z.strictObject({ ...common }),
  'drop-caches': z.strictObject({ ...common }),
  'sync-loop': z.strictObject({ ...common, action: z.enum(['start', 'stop']) }),
  writer: z.strictObject({
    ...common,
    mode: z.enum(writerModes),
    path: absPath,
    size: posInt.optional(),
    /** mmap-holes: microseconds between stores. */
    pace_us: nonNegInt.optional(),
    action: z.enum(['start', 'stop']),
  }),
  sleep: z.strictObject({ ...common, ms: nonNegInt }),
} as const;
export type StepArgKind = keyof typeof stepArgs;

/** What a bare scalar after a step keyword means (`- migrate: /f`, `- sleep: 50`). */
export const stepScalarKey: Partial<Record<StepArgKind, string>> = {
  migrate: 'paths',
  fsync: 'path',
  sleep: 'ms',
  mount: 'options',
  'sync-loop': 'action',
};

export const pointArgs = {
  none: z.strictObject({}),
  before: z.strictObject({ step: name }),
  after: z.strictObject({ step: name }),
  delay: z.strictObject({ step: name, ms: nonNegInt }),
  during: z.strictObject({ step: name, window_ms: posInt }),
  kernel: z.strictObject({
    step: name,
    symbol: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.]*(\+(0x[0-9a-fA-F]+|[0-9]+))?$/, 'a kernel symbol, optionally +offset'),
    hit: posInt.optional(),
    then_hits: nonNegInt.optional(),
    delay_ms: nonNegInt.optional(),
    /** Then run on until this many jbd2 commits complete: makes the state at the stop durable. */
    then_commits: nonNegInt.optional(),
  }),
  commit: z.strictObject({ step: name, k: posInt }),
  /** Generator: one point per journal commit k = 1..max completed during the step. */
  commits: z.strictObject({ step: name, max: posInt }),
  /** Generator: the first `first` hits of a symbol (hit 1..first), or `sample` seeded hits among the first `first`. */
  'kernel-hits': z.strictObject({
    step: name,
    symbol: z.string(),
    first: posInt,
    sample: posInt.optional(),
  }),
} as const;
export type PointArgKind = keyof typeof pointArgs;

export const pointScalarKey: Partial<Record<PointArgKind, string>> = { before: 'step', after: 'step' };

export const recoveryModes = ['e2fsck', 'kernel'] as const;

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
  suite: name.optional(),
  /** A recipe name (vm-images/recipes/) or a recipe file path; or, instead, */
  recipe: z.string().min(1).optional(),
  /** a filesystem image file of one's own (relative to the scenario file). */
  image: z.string().min(1).optional(),
  steps: z.array(z.unknown()).min(1),
  kill: z.array(z.unknown()).min(1).optional(),
  'crash-states': z.unknown().optional(),
  repeat: posInt.max(1000).optional(),
  recovery: z.union([z.enum(recoveryModes), z.array(z.enum(recoveryModes)).min(1)]).optional(),
  allow: z
    .strictObject({
      classes: z.array(z.enum(findingClasses)).optional(),
      codes: z.array(z.string()).optional(),
    })
    .optional(),
});
