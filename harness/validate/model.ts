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

