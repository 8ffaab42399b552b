import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaseResult } from '../../results/case.ts';
import type { RunSummary } from '../../results/run.ts';
import type { Finding } from '../../findings/finding.ts';
import { findingSignature } from '../../results/signature.ts';
import { problemInfo } from '../../checks/problem-codes.ts';
import { caseRelDir } from '../../results/store.ts';

/**
 * What the run report shows, computed on the host from summary.json and the
 * case folders: the matrix, findings by signature, per-case artefacts and
 * the rows the charts plot. Everything here reads results defensively: a
 * field a newer or older result schema lacks gives an empty cell, never a
 * broken page.
 */

/** `fired` read without trusting its shape (it becomes a union on `kind`). */
export interface FiredView {
  kind: string;
  atMs?: number;
  hits?: number;
  rip?: string;
  symbol?: string;
  /** jbd2 commit index, when the point counted commits. */
  commit?: number;
  /** Write-log flush epoch, when the state came from a write log. */
  epoch?: number;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

export function readFired(f: unknown): FiredView | undefined {
  if (!f || typeof f !== 'object') return undefined;
  const o = f as Record<string, unknown>;
  const kind = str(o.kind) ?? 'unknown';
  const v: FiredView = { kind };
  const atMs = num(o.atMs);
  const hits = num(o.hits);
  const commit = num(o.commit) ?? num(o.commitIndex) ?? num(o.k) ?? (kind === 'commit' ? hits : undefined);
  const epoch = num(o.epoch) ?? num(o.flushEpoch);
  if (atMs !== undefined) v.atMs = atMs;
  if (hits !== undefined) v.hits = hits;
  if (str(o.rip)) v.rip = str(o.rip)!;
  if (str(o.symbol)) v.symbol = str(o.symbol)!;
  if (commit !== undefined) v.commit = commit;
  if (epoch !== undefined) v.epoch = epoch;
  return v;
}

/**
 * The phases a case's bar stacks: disjoint parts of its time. case.json
 * also records parts of these (the kernel recovery's restore and mount, in
 * `recovery`), which the case's own section lists but the bar does not
 * count twice. The recoveries of a case overlap, so a bar can be longer
 * than the case took.
 */
export type PhaseName = 'machine' | 'workload' | 'recovery' | 'oracles' | 'queued' | 'keep';
export const phaseNames: PhaseName[] = ['queued', 'machine', 'workload', 'recovery', 'oracles', 'keep'];
export const phaseLabels: Record<PhaseName | 'total', string> = {
  queued: 'waiting for a VM slot',
  machine: 'machine (restore or boot)',
  workload: 'workload',
  recovery: 'recovery',
  oracles: 'oracles',
  keep: 'keeping the crash image',
  total: 'total (no phase breakdown recorded)',
};

/** The case's time by phase, or its total when the result has no `phases`. */
export function casePhases(c: CaseResult): Array<{ phase: PhaseName | 'total'; ms: number }> {
  const p = (c as { phases?: unknown }).phases;
  if (p && typeof p === 'object') {
    const rec = p as Record<string, unknown>;
    const out = phaseNames.flatMap((name) => {
      const ms = num(rec[`${name}Ms`]);
      return ms !== undefined ? [{ phase: name, ms }] : [];
    });
    if (out.length) return out;
  }
  return [{ phase: 'total', ms: num(c.durationMs) ?? 0 }];
}

export type ArtefactKind =
  'console' | 'qmp' | 'gdb' | 'agent' | 'e2fsck-text' | 'e2fsck-xml' | 'crash-image' | 'record' | 'other';
export const artefactKindLabels: Record<ArtefactKind, string> = {
  console: 'console log',
  qmp: 'QMP transcript',
  gdb: 'gdbstub transcript',
  agent: 'agent transcript',
  'e2fsck-text': 'e2fsck output',
  'e2fsck-xml': 'e2fsck problem log (XML)',
  'crash-image': 'crash image',
  record: 'result record',
  other: 'other',
};
const artefactOrder: ArtefactKind[] = [
  'console',
  'qmp',
  'gdb',
  'agent',
  'e2fsck-text',
  'e2fsck-xml',
  'crash-image',
  'record',
  'other',
];

export interface Artefact {
  name: string;
  /** Path relative to the run directory (where the report lives). */
  rel: string;
  kind: ArtefactKind;
  bytes: number;
}

export function artefactKind(name: string): ArtefactKind {
  if (/console.*\.log$/.test(name)) return 'console';
  if (/qmp.*\.jsonl?$/.test(name)) return 'qmp';
  if (/gdb.*\.log$/.test(name)) return 'gdb';
  if (/agent.*\.log$/.test(name)) return 'agent';
  if (/^e2fsck-.*\.txt$/.test(name)) return 'e2fsck-text';
  if (/^e2fsck-.*\.xml$/.test(name)) return 'e2fsck-xml';
  if (/\.(img|raw|qcow2)(\.\w+)?$/.test(name)) return 'crash-image';
  if (/\.json$/.test(name)) return 'record';
  return 'other';
}

/** The files in a case's folder, grouped by what they are; temp files of atomic writes are skipped. */
export async function listArtefacts(runDir: string, caseId: string): Promise<Artefact[]> {
  const rel = caseRelDir(caseId);
  let names: string[];
  try {
    names = await readdir(join(runDir, rel));
  } catch {
    return [];
  }
  const out: Artefact[] = [];
  for (const name of names.filter((n) => !n.startsWith('.'))) {
    const st = await stat(join(runDir, rel, name)).catch(() => undefined);
    if (!st?.isFile()) continue;
    out.push({ name, rel: join(rel, name), kind: artefactKind(name), bytes: st.size });
  }
  return out.sort((a, b) => artefactOrder.indexOf(a.kind) - artefactOrder.indexOf(b.kind) || a.name.localeCompare(b.name));
}

/** Recovery modes a case went through: from its e2fsck log names (e2fsck-<mode>-<n>-...), else its findings. */
export function caseRecoveries(c: CaseResult, artefacts: readonly Artefact[]): string[] {
  const modes = new Set<string>();
  for (const a of artefacts) {
    const m = /^e2fsck-([a-z][a-z0-9]*)-\d+-/.exec(a.name);
    if (m) modes.add(m[1]!);
  }
  for (const f of c.findings ?? []) if (f.recovery) modes.add(f.recovery);
  return [...modes];
}

/** The verdict of one case seen through one recovery: fail only if a failing finding came from it (or from no recovery at all). */
export function recoveryVerdict(c: CaseResult, mode: string): string {
  if (c.status !== 'fail') return c.status;
  return (c.failing ?? []).some((f) => f.recovery === mode || f.recovery === undefined) ? 'fail' : 'pass';
}

export interface MatrixCell {
  caseId: string;
  repetition: number;
  verdict: string;
}
export interface MatrixRow {
  scenario: string;
  point: string;
  /** Cells by recovery mode ("-" when the case went through none, e.g. it errored first). */
  cells: Record<string, MatrixCell[]>;
}
export interface Matrix {
  recoveries: string[];
  rows: MatrixRow[];
}

export function buildMatrix(cases: readonly CaseResult[], artefacts: ReadonlyMap<string, Artefact[]>): Matrix {
  const recoveries = new Set<string>();
  const rows = new Map<string, MatrixRow>();
  for (const c of cases) {
    const key = `${c.scenario}\u0000${c.pointLabel}`;
    let row = rows.get(key);
    if (!row) rows.set(key, (row = { scenario: c.scenario, point: c.pointLabel, cells: {} }));
    let modes = caseRecoveries(c, artefacts.get(c.id) ?? []);
    if (!modes.length) modes = ['-'];
    for (const m of modes) {
      recoveries.add(m);
      (row.cells[m] ??= []).push({
        caseId: c.id,
        repetition: c.repetition,
        verdict: m === '-' ? c.status : recoveryVerdict(c, m),
      });
    }
  }
  const order = ['e2fsck', 'kernel'];
  const recs = [...recoveries].sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b));
  for (const r of rows.values()) for (const cells of Object.values(r.cells)) cells.sort((a, b) => a.repetition - b.repetition);
  return { recoveries: recs, rows: [...rows.values()] };
}

export interface FindingGroup {
  signature: string;
  scenario: string;
  point: string;
  recovery: string;
  class: string;
  code: string;
  name: string;
  /** e2fsck's meaning of the problem code, when the code is one. */
  meaning?: string;
  sources: string[];
  message: string;
  inodes: number[];
  blocks: number[];
  paths: string[];
  caseIds: string[];
  /** Findings in the group (a case may show one several times). */
  count: number;
  /** Outside every case's allowance: these made cases fail. */
  failing: boolean;
}

export function e2fsckMeaning(code: string): string | undefined {
  if (!/^0x[0-9a-f]+$/i.test(code)) return undefined;
  return problemInfo(parseInt(code, 16)).meaning;
}

/** Findings grouped by signature (scenario, crash point, recovery, class, code), failing groups first. */
export function groupFindings(cases: readonly CaseResult[]): FindingGroup[] {
  const groups = new Map<string, FindingGroup>();
  const add = <T>(list: T[], v: T | undefined) => {
    if (v !== undefined && !list.includes(v)) list.push(v);
  };
  for (const c of cases) {
    const failing = new Set((c.failing ?? []).map((f) => JSON.stringify(f)));
    for (const f of c.findings ?? []) {
      const signature = findingSignature(c, f);
      let g = groups.get(signature);
      if (!g) {
        const meaning = e2fsckMeaning(f.code);
        groups.set(
          signature,
          (g = {
            signature,
            scenario: c.scenario,
            point: c.pointLabel,
            recovery: f.recovery ?? '-',
            class: f.class,
            code: f.code,
            name: f.name,
            ...(meaning ? { meaning } : {}),
            sources: [],
            message: f.message,
            inodes: [],
            blocks: [],
            paths: [],
            caseIds: [],
            count: 0,
            failing: false,
          }),
        );
      }
      g.count++;
      if (failing.has(JSON.stringify(f))) g.failing = true;
      add(g.sources, f.source);
      add(g.caseIds, c.id);
      add(g.inodes, f.ino);
      add(g.blocks, f.block);
      add(g.paths, f.path);
    }
  }
  const classRank = ['kernel', 'corruption', 'data', 'api', 'leak'];
  return [...groups.values()].sort(
    (a, b) =>
      Number(b.failing) - Number(a.failing) ||
      classRank.indexOf(a.class) - classRank.indexOf(b.class) ||
      b.caseIds.length - a.caseIds.length ||
      a.signature.localeCompare(b.signature),
  );
}

/** The step a crash point label names ("delay-migrate-30ms" -> "migrate"), from the case's own step names. */
export function pointStep(c: CaseResult): string | undefined {
  const names = (c.steps ?? []).map((s) => s.name).sort((a, b) => b.length - a.length);
  const label = c.pointLabel;
  for (const n of names) {
    for (const prefix of ['before', 'after', 'delay', 'during', 'kernel', 'commit']) {
      if (label === `${prefix}-${n}` || label.startsWith(`${prefix}-${n}-`)) return n;
    }
  }
  return undefined;
}

export interface CrashPointRow {
  caseId: string;
  scenario: string;
  point: string;
  step: string;
  verdict: string;
  /** Where the kill landed: ms after the step's start marker ("after" points: the step's duration). */
  atMs?: number;
  /** Kernel breakpoint hit or jbd2 commit index, for points that count instead of timing. */
  index?: number;
  indexKind?: 'kernel hit' | 'jbd2 commit';
}

export function crashPointRows(cases: readonly CaseResult[]): CrashPointRow[] {
  const rows: CrashPointRow[] = [];
  for (const c of cases) {
    const f = readFired(c.fired);
    if (!f || f.kind === 'none' || f.kind === 'not-reached') continue;
    const step = pointStep(c) ?? '?';
    const base = { caseId: c.id, scenario: c.scenario, point: c.pointLabel, step, verdict: c.status };
    if (f.kind === 'commit' && f.commit !== undefined) rows.push({ ...base, index: f.commit, indexKind: 'jbd2 commit' });
    else if (f.kind.startsWith('kernel') && f.hits !== undefined) rows.push({ ...base, index: f.hits, indexKind: 'kernel hit' });
    else if (f.atMs !== undefined) {
      // An "after" kill comes once the step is acknowledged: plot it at the step's end, not at 0.
      const after = c.pointLabel.startsWith('after-') ? c.steps?.find((s) => s.name === step)?.durationMs : undefined;
      rows.push({ ...base, atMs: Math.round((after ?? f.atMs) * 10) / 10 });
    }
  }
  return rows;
}

export interface PhaseRow {
  caseId: string;
  verdict: string;
  phase: string;
  ms: number;
}

export function phaseRows(cases: readonly CaseResult[]): PhaseRow[] {
  return cases.flatMap((c) =>
    casePhases(c).map((p) => ({ caseId: c.id, verdict: c.status, phase: phaseLabels[p.phase], ms: p.ms })),
  );
}

export interface LogStateRow {
  caseId: string;
  scenario: string;
  epoch: number;
  /** "prefix" (everything up to a flush) or "power-loss" (writes of the epoch dropped). */
  stateKind: string;
  verdict: string;
}

/**
 * Write-log crash states are cases whose id has a `/log/` part, e.g.
 * `scenario/log/flush-17` (a prefix state) or `scenario/log/flush-17-drop-3a9f`
 * (a power-loss state inside epoch 17). The epoch comes from `fired` when it
 * records one, else from the id.
 */
export function logStateRows(cases: readonly CaseResult[]): LogStateRow[] {
  const rows: LogStateRow[] = [];
  for (const c of cases) {
    const f = c.fired as { kind?: unknown; epoch?: unknown; stateKind?: unknown } | undefined;
    if (f?.kind === 'log' && typeof f.epoch === 'number' && typeof f.stateKind === 'string') {
      rows.push({ caseId: c.id, scenario: c.scenario, epoch: f.epoch, stateKind: f.stateKind, verdict: c.status });
      continue;
    }
    const m = /\/log\/([a-z]+)-(\d+)(?:-([^/]+))?/.exec(c.id);
    if (!m) continue;
    const epoch = readFired(c.fired)?.epoch ?? Number(m[2]);
    rows.push({ caseId: c.id, scenario: c.scenario, epoch, stateKind: m[3] ? 'power-loss' : 'prefix', verdict: c.status });
  }
  return rows;
}

/** How to run the same cases again: the scenario files, the kernel and the seed. */
export function reproduceCommand(s: RunSummary, caseId?: string): string {
  const kernel =
    s.kernel.kind === 'stock'
      ? 'stock'
      : s.kernel.kind === 'path'
        ? String((s.kernel.provenance as { path?: string } | undefined)?.path ?? s.kernel.id)
        : s.kernel.id;
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const args = ['qcrash', 'run', ...s.scenarios.map((x) => x.file), '--kernel', kernel, '--seed', String(s.seed)];
  // --image with scenarios named: they ran on that image, not the one they name. (The built-in set's file names its image itself.)
  if (s.config?.image && s.config.inputs.length) args.push('--image', s.config.image);
  if (caseId) args.push('--filter', caseId);
  return args.map(quote).join(' ');
}

export function isFailingFinding(c: CaseResult, f: Finding): boolean {
  const key = JSON.stringify(f);
  return (c.failing ?? []).some((x) => JSON.stringify(x) === key);
}
