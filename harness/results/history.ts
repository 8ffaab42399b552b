import { readFile, readdir, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { countStatuses, type RunSummary } from './run.ts';
import { findingSignature } from './signature.ts';
import { loadSummary, RunStore } from './store.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import { ConfigError } from '../util/errors.ts';

/**
 * The history index: one small JSON file (`history.json` in a results
 * folder) that remembers what each run found, so the history page and the
 * nightly command compare runs without reading every run's folder again.
 * Per run: its id, when, which kernel (and tree revision or branch when
 * known), the counts, each scenario's verdict, and per case its status and
 * failing finding signatures (scenario | crash point | recovery | class | code).
 * Written atomically; a file that does not parse or match the format is a
 * ConfigError that says how to rebuild it.
 */
const historySchemaId = 'qcrash-history/1';
export const historyFileName = 'history.json';

// notRun: planned cases an interrupted run never got to (absent in entries written before qcrash counted them).
const counts = z.object({ total: z.number(), pass: z.number(), fail: z.number(), error: z.number(), notReached: z.number(), notRun: z.number().default(0) });
const scenarioEntry = counts.extend({ name: z.string(), verdict: z.string() });
const caseEntry = z.object({
  id: z.string(),
  scenario: z.string(),
  point: z.string(),
  status: z.string(),
  /** Signatures of the findings that made the case fail. */
  failing: z.array(z.string()),
});
const runEntry = z.object({
  runId: z.string(),
  /** The run's folder, relative to the folder of the index. */
  dir: z.string(),
  startedAt: z.string(),
  finishedAt: z.string().optional(),
  kernel: z.object({ id: z.string(), release: z.string(), kind: z.string() }),
  /** Kernel tree branch and revision, when the run's kernel provenance or the caller says. */
  branch: z.string().optional(),
  revision: z.string().optional(),
  seed: z.number(),
  counts,
  /** Set when the run did not finish its plan: how far it got and the command that finishes it. */
  interrupted: z.object({ done: z.number(), planned: z.number(), unrecorded: z.array(z.object({ id: z.string(), budget: z.number() })), resume: z.string() }).optional(),
  scenarios: z.array(scenarioEntry),
  cases: z.array(caseEntry),
});
const indexFile = z.object({ schema: z.literal(historySchemaId), updatedAt: z.string(), runs: z.array(runEntry) });

export type HistoryRun = z.infer<typeof runEntry>;
export type HistoryIndex = z.infer<typeof indexFile>;

function emptyHistory(): HistoryIndex {
  return { schema: historySchemaId, updatedAt: new Date().toISOString(), runs: [] };
}

/** A scenario's verdict over its cases: the worst status any of them had. */
function scenarioVerdict(c: z.infer<typeof counts>): string {
  return c.fail ? 'fail' : c.error ? 'error' : c.notRun ? 'not-run' : c.notReached ? 'not-reached' : 'pass';
}

/** The index entry of one run; `dir` is stored relative to `indexDir`. */
export function historyEntry(s: RunSummary, runDir: string, indexDir: string, extra: { branch?: string; revision?: string } = {}): HistoryRun {
  const p = (s.kernel.provenance ?? {});
  const branch = extra.branch ?? (typeof p.branch === 'string' ? p.branch : undefined);
  const revision = extra.revision ?? (typeof p.base === 'string' ? p.base : typeof p.source === 'string' ? p.source : undefined);
  const byScenario = new Map<string, z.infer<typeof counts>>();
  for (const c of s.cases) {
    const n = byScenario.get(c.scenario) ?? countStatuses([]);
    const one = countStatuses([c]);
    for (const k of Object.keys(n) as Array<keyof typeof n>) n[k] += one[k];
    byScenario.set(c.scenario, n);
  }
  return {
    runId: s.runId,
    dir: relative(resolve(indexDir), resolve(runDir)) || '.',
    startedAt: s.startedAt,
    ...(s.finishedAt ? { finishedAt: s.finishedAt } : {}),
    kernel: { id: s.kernel.id, release: s.kernel.release, kind: s.kernel.kind },
    ...(branch ? { branch } : {}),
    ...(revision ? { revision } : {}),
    seed: s.seed,
    counts: { ...s.counts },
    ...(s.interrupted ? { interrupted: s.interrupted } : {}),
    scenarios: [...byScenario].sort(([a], [b]) => a.localeCompare(b)).map(([name, n]) => ({ name, ...n, verdict: scenarioVerdict(n) })),
    cases: s.cases.map((c) => ({ id: c.id, scenario: c.scenario, point: c.pointLabel, status: c.status, failing: [...new Set((c.failing ?? []).map((f) => findingSignature(c, f)))].sort() })),
  };
}

/** Add or replace (same run id) a run; runs stay in start order. */
export function addRun(index: HistoryIndex, run: HistoryRun): HistoryIndex {
  const runs = [...index.runs.filter((r) => r.runId !== run.runId), run].sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.runId.localeCompare(b.runId));
  return { schema: historySchemaId, updatedAt: new Date().toISOString(), runs };
}

/** Read an index; a missing file is an empty history, a damaged one an error that says how to rebuild. */
export async function loadHistory(file: string): Promise<HistoryIndex> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyHistory();
    throw new ConfigError(`cannot read the history index ${file}: ${(e as Error).message}`);
  }
  const rebuild = `move it away and run "qcrash history ${resolve(file, '..')}" to rebuild it from the run folders`;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`the history index ${file} is corrupt (not JSON: ${(e as Error).message}); ${rebuild}`);
  }
  const r = indexFile.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new ConfigError(`the history index ${file} is not a ${historySchemaId} index (at ${issue.path.join('.') || 'top level'}: ${issue.message}); ${rebuild}`);
  }
  return r.data;
}

export async function saveHistory(file: string, index: HistoryIndex): Promise<void> {
  await writeJsonAtomic(file, index);
}

/** Run folders directly inside `resultsDir`: those with a summary.json (finished) or run.json (interrupted). */
async function findRunDirs(resultsDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(resultsDir);
  } catch (e) {
    throw new ConfigError(`cannot read the results folder ${resultsDir}: ${(e as Error).message}`);
  }
  const out: string[] = [];
  for (const n of names.sort()) {
    const dir = join(resultsDir, n);
    const has = async (f: string) => (await stat(join(dir, f)).catch(() => undefined))?.isFile() ?? false;
    if ((await has('summary.json')) || (await has('run.json'))) out.push(dir);
  }
  return out;
}

/**
 * Bring `<resultsDir>/history.json` up to date with the run folders in
 * `resultsDir` (or `runDirs`, for runs kept elsewhere): new runs are added,
 * known ones refreshed (a resumed run may have finished since), keeping the
 * branch and revision a caller recorded for them. Returns the index and the
 * ids it added.
 */
export async function updateHistory(resultsDir: string, opts: { runDirs?: string[]; indexFile?: string } = {}): Promise<{ index: HistoryIndex; file: string; added: string[] }> {
  const file = opts.indexFile ?? join(resultsDir, historyFileName);
  let index = await loadHistory(file);
  const known = new Map(index.runs.map((r) => [r.runId, r]));
  const added: string[] = [];
  for (const dir of opts.runDirs ?? (await findRunDirs(resultsDir))) {
    // A shard is a part of a run, not a run: its merged run is what the history follows.
    if ((await RunStore.open(dir).then((r) => r.meta, () => undefined))?.shard) continue;
    const s = await loadSummary(dir);
    const old = known.get(s.runId);
    const extra = { ...(old?.branch ? { branch: old.branch } : {}), ...(old?.revision ? { revision: old.revision } : {}) };
    index = addRun(index, historyEntry(s, dir, resolve(file, '..'), extra));
    if (!old) added.push(s.runId);
  }
  await saveHistory(file, index);
  return { index, file, added };
}
