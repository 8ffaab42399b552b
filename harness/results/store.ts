import { mkdir, readFile, readdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeJsonAtomic } from '../util/atomic.ts';
import { ConfigError } from '../util/errors.ts';
import type { CaseResult } from './case.ts';
import { countStatuses, type RunMeta, type RunSummary } from './run.ts';
import { caseRelDir } from './case-dir.ts';
import { notRunCases, planProgress } from './plan.ts';
import { logPhaseSummary } from './log-phases.ts';

/** A sortable id, unique across machines: 20261124T191200Z-host-1a2b. */
export function newRunId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const host = hostname().replace(/[^A-Za-z0-9-]/g, '').slice(0, 24) || 'host';
  return `${t}-${host}-${randomBytes(2).toString('hex')}`;
}

export { caseRelDir };

/**
 * results/<run-id>/: run.json (what the run is), cases/<...>/case.json per
 * finished case, summary.json at the end. Every file is written atomically;
 * the summary can always be rebuilt from the case files, which is what makes
 * a run resumable and mergeable across machines by run id.
 */
export class RunStore {
  private constructor(
    readonly dir: string,
    readonly meta: RunMeta,
  ) {}

  static async create(dir: string, meta: RunMeta): Promise<RunStore> {
    await mkdir(join(dir, 'cases'), { recursive: true });
    await writeJsonAtomic(join(dir, 'run.json'), meta);
    return new RunStore(resolve(dir), meta);
  }

  static async open(dir: string): Promise<RunStore> {
    let text: string;
    try {
      text = await readFile(join(dir, 'run.json'), 'utf8');
    } catch {
      throw new ConfigError(`${dir} is not a qcrash run folder (no run.json)`);
    }
    let meta: RunMeta;
    try {
      meta = JSON.parse(text) as RunMeta;
    } catch (e) {
      throw new ConfigError(`${join(dir, 'run.json')} is damaged (${(e as Error).message}): the run cannot be read or resumed`);
    }
    return new RunStore(resolve(dir), meta);
  }

  caseDir(caseId: string): string {
    return join(this.dir, caseRelDir(caseId));
  }

  async writeCase(r: CaseResult): Promise<void> {
    const dir = this.caseDir(r.id);
    await writeJsonAtomic(join(dir, 'findings.json'), r.findings);
    // case.json last: its presence marks the case complete for --resume.
    await writeJsonAtomic(join(dir, 'case.json'), { ...r, dir: caseRelDir(r.id) });
  }

  /**
   * The cases written so far. For --resume an unreadable case.json is a case
   * to run again (said on stderr); readers that must not lose a case use
   * readCases() and refuse.
   */
  async loadCases(): Promise<CaseResult[]> {
    const { cases, unreadable } = await readCaseFiles(this.dir);
    for (const u of unreadable) process.stderr.write(`qcrash: ${u.file} is unreadable (${u.error}): that case runs again\n`);
    return cases;
  }

  async completedCaseIds(): Promise<Set<string>> {
    return new Set((await this.loadCases()).map((c) => c.id));
  }

  async summary(cases: CaseResult[], finished: boolean): Promise<RunSummary> {
    const all = [...cases, ...(await notRunCases(this.dir, this.meta, cases))];
    const sorted = all.sort((a, b) => a.id.localeCompare(b.id));
    const progress = planProgress(this.dir, sorted);
    const logPhases = logPhaseSummary(sorted);
    return {
      ...this.meta,
      ...(finished && !progress ? { finishedAt: new Date().toISOString() } : {}),
      ...(progress ? { interrupted: progress } : {}),
      counts: countStatuses(sorted),
      ...(logPhases ? { logPhases } : {}),
      cases: sorted,
    };
  }

  async writeSummary(s: RunSummary): Promise<void> {
    await writeJsonAtomic(join(this.dir, 'summary.json'), s);
  }
}

const statuses = new Set(['pass', 'fail', 'error', 'not-reached', 'not-run']);

function isCase(v: unknown): v is CaseResult {
  const c = v as Partial<CaseResult> | null;
  return !!c && typeof c.id === 'string' && statuses.has(c.status as string) && Array.isArray(c.findings) && Array.isArray(c.failing);
}

/** Every case.json under a run folder, and the ones that could not be read. */
export async function readCaseFiles(dir: string): Promise<{ cases: CaseResult[]; unreadable: Array<{ file: string; error: string }> }> {
  let files: string[];
  try {
    files = (await readdir(join(dir, 'cases'), { recursive: true }));
  } catch {
    return { cases: [], unreadable: [] };
  }
  const cases: CaseResult[] = [];
  const unreadable: Array<{ file: string; error: string }> = [];
  for (const f of files.filter((x) => x.endsWith('case.json')).sort()) {
    const file = join(dir, 'cases', f);
    try {
      const v: unknown = JSON.parse(await readFile(file, 'utf8'));
      if (!isCase(v)) throw new Error('not a case record');
      cases.push(v);
    } catch (e) {
      unreadable.push({ file, error: (e as Error).message });
    }
  }
  return { cases, unreadable };
}

/**
 * A run's summary, for readers (compare, merge, reports): summary.json, or
 * rebuilt from the case files when the run was interrupted before writing
 * it. A damaged summary.json or case.json, or a run without a single case,
 * is refused: a comparison that silently drops cases would call a lost case
 * "unchanged".
 */
export async function loadSummary(dir: string): Promise<RunSummary> {
  const file = join(dir, 'summary.json');
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    text = undefined;
  }
  let summary: RunSummary;
  if (text !== undefined) {
    try {
      summary = JSON.parse(text) as RunSummary;
    } catch (e) {
      throw new ConfigError(`${file} is damaged (${(e as Error).message}): the run cannot be read`);
    }
    if (!summary || typeof summary.runId !== 'string' || !Array.isArray(summary.cases) || !summary.cases.every(isCase)) {
      throw new ConfigError(`${file} is not a qcrash run summary (no runId, or a case without id and status)`);
    }
  } else {
    const store = await RunStore.open(dir);
    const { cases, unreadable } = await readCaseFiles(dir);
    if (unreadable.length) throw new ConfigError(`${unreadable[0]!.file} is damaged (${unreadable[0]!.error})${unreadable.length > 1 ? ` and ${unreadable.length - 1} more case file(s)` : ''}: the run cannot be read`);
    summary = await store.summary(cases, false);
  }
  // Counts as this qcrash counts them (older summaries have no not-run count).
  summary.counts = countStatuses(summary.cases);
  if (!summary.cases.length) throw new ConfigError(`${dir} holds no case: there is nothing to read (did the run start?)`);
  return summary;
}

/**
 * Merge runs made on several machines under one run id: cases by id. A case
 * present twice with different statuses keeps the worse one and is listed in
 * `conflicts`.
 */
export async function mergeRuns(dirs: string[]): Promise<{ summary: RunSummary; conflicts: string[] }> {
  const summaries = await Promise.all(dirs.map(loadSummary));
  const ids = new Set(summaries.map((s) => s.runId));
  if (ids.size > 1) throw new ConfigError(`cannot merge different runs: ${[...ids].join(', ')}`);
  // A case one machine ran beats the same case another did not get to.
  const rank = { 'not-run': -1, pass: 0, 'not-reached': 1, error: 2, fail: 3 } as const;
  const byId = new Map<string, CaseResult>();
  const conflicts: string[] = [];
  for (const s of summaries) {
    for (const c of s.cases) {
      const prev = byId.get(c.id);
      if (prev && prev.status !== c.status && prev.status !== 'not-run' && c.status !== 'not-run') conflicts.push(c.id);
      if (!prev || rank[c.status] > rank[prev.status]) byId.set(c.id, c);
    }
  }
  const cases = [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  const first = summaries[0]!;
  return { summary: { ...first, cases, counts: countStatuses(cases) }, conflicts };
}
