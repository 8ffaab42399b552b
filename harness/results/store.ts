import { mkdir, readFile, readdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeJsonAtomic } from '../util/atomic.ts';
import { ConfigError } from '../util/errors.ts';
import type { CaseResult } from './case.ts';
import { countStatuses, type RunMeta, type RunSummary } from './run.ts';

/** A sortable id, unique across machines: 20261124T191200Z-host-1a2b. */
export function newRunId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const host = hostname().replace(/[^A-Za-z0-9-]/g, '').slice(0, 24) || 'host';
  return `${t}-${host}-${randomBytes(2).toString('hex')}`;
}

/** Case ids contain "/"; each part becomes a directory level, made safe for any filesystem. */
export function caseRelDir(caseId: string): string {
  return join('cases', ...caseId.split('/').map((p) => p.replace(/[^A-Za-z0-9._+-]/g, '_')));
}



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
    let meta: RunMeta;
    try {
      meta = JSON.parse(await readFile(join(dir, 'run.json'), 'utf8')) as RunMeta;
    } catch {
      throw new ConfigError(`${dir} is not a qcrash run directory (no run.json)`);
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

  async loadCases(): Promise<CaseResult[]> {
    return loadCaseFiles(this.dir);
  }

  async completedCaseIds(): Promise<Set<string>> {
    return new Set((await this.loadCases()).map((c) => c.id));
  }

  summary(cases: CaseResult[], finished: boolean): RunSummary {
    const sorted = [...cases].sort((a, b) => a.id.localeCompare(b.id));
    return { ...this.meta, ...(finished ? { finishedAt: new Date().toISOString() } : {}), counts: countStatuses(sorted), cases: sorted };
  }

  async writeSummary(s: RunSummary): Promise<void> {
    await writeJsonAtomic(join(this.dir, 'summary.json'), s);
  }
}

async function loadCaseFiles(dir: string): Promise<CaseResult[]> {
  let files: string[];
  try {
    files = (await readdir(join(dir, 'cases'), { recursive: true })) as string[];
  } catch {
    return [];
  }
  const out: CaseResult[] = [];
  for (const f of files.filter((x) => x.endsWith('case.json'))) {
    try {
      out.push(JSON.parse(await readFile(join(dir, 'cases', f), 'utf8')) as CaseResult);
    } catch {
      /* an unreadable case file is a case to run again */
    }
  }
  return out;
}

/** Load a run's summary; rebuilds it from the case files when summary.json is missing (an interrupted run). */
export async function loadSummary(dir: string): Promise<RunSummary> {
  try {
    return JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8')) as RunSummary;
  } catch {
    const store = await RunStore.open(dir);
    return store.summary(await store.loadCases(), false);
  }
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
  const rank = { pass: 0, 'not-reached': 1, error: 2, fail: 3 } as const;
  const byId = new Map<string, CaseResult>();
  const conflicts: string[] = [];
  for (const s of summaries) {
    for (const c of s.cases) {
      const prev = byId.get(c.id);
      if (prev && prev.status !== c.status) conflicts.push(c.id);
      if (!prev || rank[c.status] > rank[prev.status]) byId.set(c.id, c);
    }
  }
  const cases = [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  const first = summaries[0]!;
  return { summary: { ...first, cases, counts: countStatuses(cases) }, conflicts };
}
