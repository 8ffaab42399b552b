import type { KernelInfo } from '../kernel/kernel.ts';
import type { RunSummary } from '../results/run.ts';
import type { Signature } from '../results/signature.ts';

/** The failing findings of one signature in one run, and the cases that showed it. */
export interface SignatureCases {
  signature: string;
  sig: Signature;
  caseIds: string[];
}

export interface SignatureVerdict extends SignatureCases {
  /** Seen in this many of the confirmation reruns. */
  confirmed: number;
  reruns: number;
  verdict: 'introduced' | 'flaky';
}

export interface ValidateResult {
  baseline: { kernel: KernelInfo; summary: RunSummary; dir: string };
  patched: { kernel: KernelInfo; summary: RunSummary; dir: string };
  introduced: SignatureVerdict[];
  flaky: SignatureVerdict[];
  removed: string[];
  unchanged: string[];
  /** Cases that errored or never reached their point: they judged nothing, on either kernel. */
  notJudged: { baseline: string[]; patched: string[] };
  dir: string;
  /**
   * Set for one shard of a sharded validate (`--shard I/N`): its judgement
   * covers only its part; `qcrash merge` judges the whole.
   */
  shard?: { index: number; total: number };
  /** What a merged validate lacks (missing shards or cases): the result is incomplete, never a Tested-by. */
  problems?: string[];
  /** Where the time went, in milliseconds: kernel builds (validatePatch only; a cached kernel costs its lookup), each run, the confirmation reruns. */
  phases?: ValidatePhases;
}

export interface ValidatePhases {
  buildBaselineMs?: number;
  buildPatchedMs?: number;
  baselineRunMs: number;
  patchedRunMs: number;
  confirmMs: number;
  totalMs: number;
}

/** A patch of a validated series, as the report names it. */
export interface SeriesPatchRef {
  /** 1-based position in the series. */
  index: number;
  total: number;
  subject: string;
  /** The file applied (a piece of an mbox, or the given file). */
  file: string;
  /** The given file it came from (with the mail's position in an mbox). */
  origin: string;
  sha256: string;
}

/** One patch of a series: the kernel with it and every patch before it, judged against the kernel without it. */
export interface SeriesStep {
  patch: SeriesPatchRef;
  kernel: KernelInfo;
  summary: RunSummary;
  dir: string;
  /** The confirmation reruns of this step's new signatures, in order. */
  confirmDirs: string[];
  /** New against the previous kernel (the baseline for patch 1) and seen on every rerun. */
  introduced: SignatureVerdict[];
  flaky: SignatureVerdict[];
  /** On the previous kernel, gone with this patch. */
  removed: string[];
  /** On the previous kernel and still here: left by this patch. */
  unchanged: string[];
  notJudged: string[];
}

/** One failing signature across the kernels of a series. */
export interface SeriesFinding {
  signature: string;
  /** Whether the main run showed it: index 0 the baseline, k the kernel with patches 1..k. */
  seen: boolean[];
  /** The first patch whose step confirmed it as introduced. */
  introducedBy?: number;
  /**
   * Introduced by a patch and absent from the whole series' kernel: `by` is
   * the patch from which on no run showed it, and its cases were rerun on
   * that patch's kernel: hidden when no rerun showed it either.
   */
  hidden?: { by: number; absentIn: number; reruns: number; dirs: string[] };
}

export interface SeriesResult {
  baseline: { kernel: KernelInfo; summary: RunSummary; dir: string; notJudged: string[] };
  steps: SeriesStep[];
  /** Mails of the input that carry no diff (cover letters, replies). */
  skipped: Array<{ origin: string; subject: string; why: string }>;
  findings: SeriesFinding[];
  dir: string;
}
