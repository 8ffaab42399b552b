import type { Finding } from '../findings/finding.ts';
import { knownBugAllowing } from '../findings/finding.ts';
import { heldCounts, type RunSummary } from '../results/run.ts';
import { logPhaseLines, logPhaseSummary } from '../results/log-phases.ts';
import { fileReports, fileRowText, type FileReport } from '../results/file-report.ts';
import { progressLine } from '../results/plan.ts';

/**
 * A plain-text summary short enough to paste into a mail: what ran where,
 * the counts, and each failing case with its findings, lines under 72
 * columns where the data allows.
 */
export function textReport(s: RunSummary, opts: { markdown?: boolean; maxFindings?: number } = {}): string {
  const md = opts.markdown ?? false;
  const out = [...heading(`qcrash run ${s.runId}`, md), ...runFacts(s), ...allowedAndKnown(s)];
  for (const rep of fileReports(s)) out.push('', ...imageFileLines(rep, md));
  out.push(...failingCaseLines(s, md, opts.maxFindings ?? 8), ...notRunLines(s, md));
  out.push('');
  // Where the write-log states' time went, last: the pace of a run of many states.
  const logPhases = s.logPhases ?? logPhaseSummary(s.cases);
  if (logPhases) out.push(...logPhaseLines(logPhases));
  out.push(resultLine(s));
  return out.join('\n') + '\n';
}

/** A section title: a markdown heading, or the text underlined. */
function heading(t: string, md: boolean): string[] {
  return md ? [`### ${t}`] : [t, '-'.repeat(Math.min(t.length, 72))];
}

/** What ran where: kernel, tools, seed, scenarios, shards, the counts and the write-log states. */
function runFacts(s: RunSummary): string[] {
  const out = [
    `kernel:    ${s.kernel.release} (${s.kernel.id})`,
    `qemu:      ${s.versions.qemu} (${s.accel})`,
    `e2fsprogs: ${s.versions.e2fsprogs}`,
    `seed:      ${s.seed}`,
    `scenarios: ${s.scenarios.map((x) => x.name).join(', ')}`,
  ];
  if (s.shard)
    out.push(
      `shard:     ${s.shard.index}/${s.shard.total} of a run of ${s.shard.assignment.flat().length} case(s) (case list ${s.shard.caseListHash.slice(0, 12)})`,
    );
  if (s.merged)
    out.push(
      `shards:    ${s.merged.shards.length} of ${s.merged.total} merged${s.merged.missing.length ? ` (MISSING: ${s.merged.missing.map((i) => `${i}/${s.merged!.total}`).join(', ')})` : ''}, from ${[...new Set(s.merged.shards.map((x) => x.host))].join(', ')}`,
    );
  const c = s.counts;
  out.push(
    `cases:     ${c.total} total, ${c.pass} passed, ${c.fail} failed, ${c.error} errors, ${c.notReached} not reached${c.notRun ? `, ${c.notRun} not run` : ''}`,
  );
  if (s.interrupted) out.push(progressLine(s.interrupted));
  const log = logStateCounts(s.cases);
  if (log.states)
    out.push(
      `write-log: ${log.states} crash states from ${log.units} recorded run(s): ${log.prefix} prefix, ${log.powerLoss} power-loss${log.failed ? ` (${log.failed} failed)` : ''}${log.fastCommits ? `; the logs hold ${log.fastCommits} fast commit(s)` : ''}`,
    );
  const held = heldCounts(s.cases);
  if (held.asked)
    out.push(
      `held:      ${held.ran} interleaving(s) held at a kernel point, ${held.markerReached} reached their marker${held.limit ? `, ${held.limit} ended at their limit` : ''}${held.notHit ? `; ${held.notHit} case(s) never hit the hold point` : ''}`,
    );
  return out;
}

/** Findings let pass (leaks, a scenario's allow:), the known bugs checked, and kill points that hit a clone. */
function allowedAndKnown(s: RunSummary): string[] {
  const out: string[] = [];
  const leaks = s.cases.reduce((a, x) => a + x.findings.filter((f) => f.class === 'leak').length, 0);
  if (leaks) out.push(`allowed:   ${leaks} leak finding(s) (what an interrupted migration may leave)`);
  // Findings a scenario's `allow:` lets pass beyond leaks (a known bug covered elsewhere): counted, never hidden.
  // Those a known bug's allowance let pass are counted under its entry, so a reader sees why.
  const otherAllowed = new Map<string, number>();
  const byKnownBug = new Map<string, Map<string, number>>();
  for (const x of s.cases) {
    const failing = new Set(x.failing.map((f) => JSON.stringify(f)));
    for (const f of x.findings) {
      if (f.class === 'leak' || failing.has(JSON.stringify(f))) continue;
      const entry = knownBugAllowing(f, x.allow);
      const counts = entry ? (byKnownBug.get(entry) ?? byKnownBug.set(entry, new Map()).get(entry)!) : otherAllowed;
      counts.set(f.code, (counts.get(f.code) ?? 0) + 1);
    }
  }
  const list = (m: Map<string, number>) => [...m].map(([code, n]) => `${n} ${code}`).join(', ');
  if (otherAllowed.size) out.push(`allowed:   ${list(otherAllowed)} (by the scenarios' allow:)`);
  for (const [entry, m] of byKnownBug) out.push(`allowed:   ${list(m)} (explained by known-bugs/${entry})`);
  for (const k of knownBugNotes(s)) out.push(`known bug: ${k}`);
  const clones = cloneNotes(s.cases);
  if (clones.length) out.push(`clones:    ${clones.join(', ')} (kill points stopped in the compiler's clone of their function)`);
  return out;
}

/** A user's image: the answer per file, in short; files.txt has every file. */
function imageFileLines(rep: FileReport, md: boolean): string[] {
  const fc = rep.counts;
  const out = [
    ...heading(`Files of ${rep.image} (${rep.scenario})`, md),
    `ioctl:     ${fc.migrated} migrated, ${fc.refused} refused, ${fc.skipped} skipped${fc.badReturn ? `, ${fc.badReturn} bad return` : ''}${rep.reference ? ` (${rep.reference})` : ' (no migration completed)'}`,
    `no crash:  ${rep.rows.some((r) => r.noCrash) ? (fc.noCrashDamaged ? `${fc.noCrashDamaged} file(s) changed by the migration itself` : 'bytes, blocks and mapping as expected for every file') : 'did not complete'}`,
    `crashes:   ${rep.crashCases} case(s), ${fc.crashDamaged ? `${fc.crashDamaged} file(s) damaged` : 'no file damaged'}`,
  ];
  const notable = rep.rows.filter(
    (r) => r.ioctl === 'refused' || r.ioctl === 'bad-return' || r.damaged.length || r.noCrash?.codes.length,
  );
  for (const r of notable.slice(0, 20)) out.push(`${md ? '- ' : '  '}${fileRowText(r, rep.crashCases)}`);
  if (notable.length > 20) out.push(`  ... ${notable.length - 20} more`);
  out.push(`every file: files.txt in the run folder`);
  return out;
}

/** Each case that failed, errored or was not reached, with its first error line and its findings grouped. */
function failingCaseLines(s: RunSummary, md: boolean, maxFindings: number): string[] {
  const bad = s.cases.filter((x) => x.status !== 'pass' && x.status !== 'not-run');
  if (!bad.length) return [];
  const out = ['', ...heading('Failing cases', md)];
  for (const x of bad) {
    out.push(`${md ? '- ' : ''}${x.status.toUpperCase()} ${x.id}`);
    if (x.error) out.push(`    ${x.error.split('\n')[0]}`);
    if (x.fired?.held) out.push(`    held: ${x.fired.held.line}`);
    for (const line of groupFindings(x.failing).slice(0, maxFindings)) out.push(`    ${line}`);
  }
  return out;
}

/** The first 20 cases an interrupted run never reached. */
function notRunLines(s: RunSummary, md: boolean): string[] {
  const notRun = s.cases.filter((x) => x.status === 'not-run');
  if (!notRun.length) return [];
  const out = ['', ...heading(`Not run (${notRun.length})`, md)];
  for (const x of notRun.slice(0, 20))
    out.push(
      `${md ? '- ' : '  '}${x.id}${x.plannedStates !== undefined ? ` (write log not recorded: up to ${x.plannedStates} states)` : ''}`,
    );
  if (notRun.length > 20) out.push(`  ... ${notRun.length - 20} more`);
  return out;
}

/** The verdict, last: a shard with no cases defers to the merged run; a run stopped with nothing failed is interrupted, not failed. */
function resultLine(s: RunSummary): string {
  const c = s.counts;
  if (c.total === 0 && s.shard) return 'Result: nothing to run in this shard (the merged run has the verdict)';
  if (c.fail + c.error + c.notReached === 0 && c.notRun) return `Result: INTERRUPTED (${c.notRun} not run)`;
  return c.total > 0 && c.fail + c.error + c.notReached + c.notRun === 0 ? 'Result: PASS' : 'Result: FAIL';
}

/** "chattr-eagain-lost: confirmed on 6.1, 6.12 (this run: 6.12)": the known bugs a run checks and the lines they were confirmed on. */
export function knownBugNotes(s: Pick<RunSummary, 'scenarios' | 'kernel'>): string[] {
  const line = s.kernel.line;
  return s.scenarios
    .filter((x) => x.confirmedOn)
    .map(
      (x) =>
        `${x.name}: confirmed on ${x.confirmedOn!.join(', ')}${line ? ` (this run: ${line}${x.confirmedOn!.includes(line) ? '' : ', NOT confirmed on this line yet'})` : ''}`,
    );
}

/** "free_dind_blocks -> free_dind_blocks.constprop.0 (3 cases)": kill points whose function this kernel has only as a clone. */
function cloneNotes(cases: RunSummary['cases']): string[] {
  const m = new Map<string, number>();
  for (const x of cases) {
    const f = x.fired;
    if (f?.kind === 'kernel' && f.clone)
      m.set(`${f.clone.of} -> ${f.clone.symbol}`, (m.get(`${f.clone.of} -> ${f.clone.symbol}`) ?? 0) + 1);
  }
  return [...m].map(([k, n]) => `${k} (${n} case${n === 1 ? '' : 's'})`);
}

/** How many write-log crash states a run checked, by kind. */
function logStateCounts(cases: RunSummary['cases']): {
  states: number;
  units: number;
  prefix: number;
  powerLoss: number;
  failed: number;
  fastCommits: number;
} {
  // A unit's fast commits, told by each of its states: counted once per unit.
  const units = new Map<string, number>();
  const c = { states: 0, units: 0, prefix: 0, powerLoss: 0, failed: 0, fastCommits: 0 };
  for (const x of cases) {
    const f = x.fired;
    if (f?.kind !== 'log') continue;
    c.states++;
    units.set(f.unit, Math.max(units.get(f.unit) ?? 0, f.fastCommits ?? 0));
    if (f.stateKind === 'prefix') c.prefix++;
    else c.powerLoss++;
    if (x.status === 'fail') c.failed++;
  }
  c.units = units.size;
  for (const n of units.values()) c.fastCommits += n;
  return c;
}

/** "corruption PR_5_BLOCK_USED x3 [e2fsck]": one line per kind of finding. */
function groupFindings(fs: readonly Finding[]): string[] {
  const m = new Map<string, { f: Finding; n: number }>();
  for (const f of fs) {
    const k = `${f.class} ${f.name} ${f.recovery ?? ''}`;
    const e = m.get(k);
    if (e) e.n++;
    else m.set(k, { f, n: 1 });
  }
  return [...m.values()].map(
    ({ f, n }) =>
      `${f.class} ${f.code === f.name ? f.name : `${f.name} (${f.code})`}${n > 1 ? ` x${n}` : ''}${f.recovery ? ` [${f.recovery}]` : ''}: ${f.message.slice(0, 100)}`,
  );
}
