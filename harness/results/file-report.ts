import type { CaseResult } from './case.ts';
import type { RunSummary } from './run.ts';
import type { Finding } from '../findings/finding.ts';
import { errnoName, migrationOutcome, type MigrateReport } from '../crash/step-report.ts';

/**
 * Per file, what a run on a user's image found: the question a `chattr +e`
 * user asks about each file before converting a filesystem. Which files the
 * kernel migrated and which it refused (with the errno), whether their
 * bytes and their physical blocks survived the migration with no crash,
 * and whether any crash state damaged them. Derived from the cases alone
 * (their migrate steps' per-file ioctl results and the findings that name a
 * file), so a report rebuilt from the case files says the same.
 */

/** What the FS_IOC_SETFLAGS ioctl said for a path in the run without a crash (or, failing that, the first run whose migration completed). */
type IoctlOutcome = 'migrated' | 'refused' | 'bad-return' | 'skipped' | 'not-asked';

export interface FileRow {
  path: string;
  /** file, dir, or what the walk skipped (symlink, other); absent for a path only findings named. */
  type?: string;
  ioctl: IoctlOutcome;
  /** For refused: the errno's name and number ("EOPNOTSUPP (95)"); for bad-return: the value returned. */
  why?: string;
  /** After the migration with no crash (every recovery): undefined when no such run completed. */
  noCrash?: {
    /** Bytes and size as before (no content-changed, size-changed or missing finding). */
    bytes: boolean;
    /** Every logical block still on the physical block it had, fully one mapping (no mapping-changed or half-converted). */
    blocks: boolean;
    /** Extent-mapped after a migration the kernel acknowledged, block-mapped after a refusal (no not-durable or migrated-despite-error). */
    mapping: boolean;
    /** Every finding outside what a crash may leave that names the file (e2fsck's too): none means it came through untouched. */
    codes: string[];
  };
  /** Crash cases whose failing findings name this file (per recovery): what a crash may leave is not damage. */
  damaged: Array<{ case: string; recovery?: string; code: string }>;
}

export interface FileReport {
  scenario: string;
  image?: string;
  /** The case whose per-file ioctl results the rows show. */
  reference?: string;
  /** Crash cases checked: cases with a crash point that ran (each checked after every recovery mode of its scenario). */
  crashCases: number;
  rows: FileRow[];
  counts: { migrated: number; refused: number; badReturn: number; skipped: number; notAsked: number; noCrashDamaged: number; crashDamaged: number };
}

const bytesCodes = new Set(['content-changed', 'content-invalid', 'size-changed', 'missing']);
const blockCodes = new Set(['mapping-changed', 'half-converted']);
const mappingCodes = new Set(['not-durable', 'migrated-despite-error']);

/** The per-file report of each scenario of the run that ran on a user's image. */
export function fileReports(s: RunSummary): FileReport[] {
  return s.scenarios.filter((x) => x.image).map((x) => fileReport(x.name, s.cases.filter((c) => c.scenario === x.name), x.image));
}

export function fileReport(scenario: string, cases: readonly CaseResult[], image?: string): FileReport {
  const migrateReports = (c: CaseResult) => (c.steps ?? []).filter((st) => st.kind === 'migrate').map((st) => st.report);
  const complete = (c: CaseResult) => {
    const r = migrateReports(c);
    return r.length > 0 && r.every((x) => x?.kind === 'migrate');
  };
  const noCrash = cases.find((c) => c.pointLabel === 'no-kill' && c.status !== 'error' && complete(c));
  const reference = noCrash ?? cases.find((c) => c.status !== 'error' && complete(c));

  const rows = new Map<string, FileRow>();
  const row = (path: string): FileRow => {
    let r = rows.get(path);
    if (!r) rows.set(path, (r = { path, ioctl: 'not-asked', damaged: [] }));
    return r;
  };
  for (const rep of reference ? (migrateReports(reference) as MigrateReport[]) : []) {
    for (const f of rep.files) {
      const r = row(f.path);
      r.type = f.type;
      r.ioctl = migrationOutcome(f);
      if (r.ioctl === 'refused') r.why = errnoName(f.errno);
      else if (r.ioctl === 'bad-return') r.why = `returned ${f.ret}`;
      else delete r.why;
    }
    for (const sk of rep.skipped) {
      const r = row(sk.path);
      r.type = sk.type;
      r.ioctl = 'skipped';
    }
  }
  const named = (f: Finding) => f.path !== undefined && f.class !== 'leak';
  if (noCrash) {
    for (const r of rows.values()) r.noCrash = { bytes: true, blocks: true, mapping: true, codes: [] };
    for (const f of noCrash.findings.filter(named)) {
      const r = row(f.path!);
      r.noCrash ??= { bytes: true, blocks: true, mapping: true, codes: [] };
      if (bytesCodes.has(f.code)) r.noCrash.bytes = false;
      if (blockCodes.has(f.code)) r.noCrash.blocks = false;
      if (mappingCodes.has(f.code)) r.noCrash.mapping = false;
      if (!r.noCrash.codes.includes(f.code)) r.noCrash.codes.push(f.code);
    }
  }
  let crashCases = 0;
  for (const c of cases) {
    if (c.pointLabel === 'no-kill' || c.status === 'error') continue;
    crashCases++;
    const failing = new Set(c.failing.map((f) => JSON.stringify(f)));
    for (const f of c.findings) {
      if (!named(f) || !failing.has(JSON.stringify(f))) continue;
      row(f.path!).damaged.push({ case: c.id, ...(f.recovery ? { recovery: f.recovery } : {}), code: f.code });
    }
  }
  const list = [...rows.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const n = (o: IoctlOutcome) => list.filter((r) => r.ioctl === o).length;
  return {
    scenario,
    ...(image ? { image } : {}),
    ...(reference ? { reference: reference.id } : {}),
    crashCases,
    rows: list,
    counts: {
      migrated: n('migrated'),
      refused: n('refused'),
      badReturn: n('bad-return'),
      skipped: n('skipped'),
      notAsked: n('not-asked'),
      noCrashDamaged: list.filter((r) => r.noCrash?.codes.length).length,
      crashDamaged: list.filter((r) => r.damaged.length).length,
    },
  };
}

/** One line per file: what the ioctl said, what survived with no crash, what the crashes did. */
export function fileRowText(r: FileRow, crashCases: number): string {
  const ioctl = r.ioctl === 'refused' ? `refused ${r.why ?? ''}` : r.ioctl === 'bad-return' ? `bad-return (${r.why ?? ''})` : r.ioctl;
  const nc = r.noCrash;
  // The content oracle holds files and symlinks to their bytes and blocks; a directory to being there with its mapping.
  const dir = r.type === 'dir';
  const after = !nc
    ? 'no-crash run: n/a'
    : [
        ...(dir ? [nc.bytes ? 'present' : 'MISSING'] : [nc.bytes ? 'bytes ok' : 'BYTES CHANGED', nc.blocks ? 'blocks ok' : 'BLOCKS MOVED']),
        nc.mapping ? (r.ioctl === 'migrated' ? 'extents' : r.ioctl === 'refused' ? 'still block-mapped' : 'mapping ok') : r.ioctl === 'refused' ? 'EXTENTS DESPITE REFUSAL' : 'NOT EXTENT-MAPPED',
        ...(nc.codes.length ? [`findings: ${nc.codes.join(', ')}`] : []),
      ].join(', ');
  const crashes = r.damaged.length ? `DAMAGED in ${new Set(r.damaged.map((d) => d.case)).size} of ${crashCases} crash cases (${[...new Set(r.damaged.map((d) => `${d.code}${d.recovery ? ` [${d.recovery}]` : ''}`))].join(', ')})` : `survived ${crashCases} crash cases`;
  return `${r.path}${r.type && r.type !== 'file' ? ` (${r.type})` : ''}: ${ioctl}; ${after}; ${r.ioctl === 'skipped' ? 'not migrated' : crashes}`;
}

/** The whole table as text: files.txt in the run folder. */
export function fileReportText(rep: FileReport): string {
  const c = rep.counts;
  const out = [
    `Files of ${rep.image ?? rep.scenario} (scenario ${rep.scenario})`,
    `ioctl results from ${rep.reference ?? 'no case whose migration completed'}: ${c.migrated} migrated, ${c.refused} refused, ${c.skipped} skipped (symlinks and special files, as chattr -R skips them)${c.badReturn ? `, ${c.badReturn} with a return value the ABI does not allow` : ''}${c.notAsked ? `, ${c.notAsked} not asked` : ''}`,
    `no crash: ${rep.rows.some((r) => r.noCrash) ? (c.noCrashDamaged ? `${c.noCrashDamaged} file(s) changed by the migration itself` : 'every file kept its bytes and blocks, with the mapping the ioctl said') : 'no no-crash case completed'}`,
    `crashes: ${rep.crashCases} crash cases checked; ${c.crashDamaged ? `${c.crashDamaged} file(s) damaged` : 'no file damaged'}`,
    '',
    ...rep.rows.map((r) => fileRowText(r, rep.crashCases)),
  ];
  return out.join('\n') + '\n';
}
