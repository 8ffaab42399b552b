import t from 'tap';
import { access } from 'node:fs/promises';
import { logPhaseLines, logPhaseSummary } from '../../harness/results/log-phases.ts';
import { textReport } from '../../harness/report/text.ts';
import { summaryOf } from '../helpers/run-summary.ts';
import { TempDir, sweepStaleTempDirs } from '../../harness/util/tempdir.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import type { RunSummary } from '../../harness/results/run.ts';

const logCase = (id: string, durationMs: number, phases: CaseResult['phases']): CaseResult =>
  ({
    id,
    scenario: 's',
    suite: 'default',
    pointLabel: 'log-prefix',
    repetition: 1,
    seed: 1,
    status: 'pass',
    findings: [],
    failing: [],
    allow: {},
    durationMs,
    dir: id,
    phases,
    fired: { kind: 'log', unit: 's/log/r1', stateKind: 'prefix' },
  }) as unknown as CaseResult;

t.test('write-log time per phase: means per state and states per minute of case time; kill cases left out', async (t) => {
  const cases = [
    logCase('a', 20, {
      materialiseMs: 2,
      recoveryMs: 6,
      oraclesMs: 12,
      contentMs: 4,
      fnCheckMs: 8,
      repairMs: 0,
      recheckMs: 0,
      queuedMs: 0,
    }),
    logCase('b', 40, {
      materialiseMs: 4,
      recoveryMs: 6,
      oraclesMs: 30,
      contentMs: 4,
      fnCheckMs: 8,
      repairMs: 10,
      recheckMs: 8,
      queuedMs: 2,
    }),
    { ...logCase('kill', 9000, { machineMs: 5000 }), fired: { kind: 'timed' } } as unknown as CaseResult,
  ];
  const p = logPhaseSummary(cases)!;
  t.equal(p.states, 2);
  t.same(p.perStateMs, {
    materialise: 3,
    recovery: 6,
    content: 4,
    fnCheck: 8,
    repair: 5,
    recheck: 4,
    oracles: 21,
    queued: 1,
    case: 30,
  });
  t.equal(p.statesPerMinute, 2000);
  t.equal(p.sameImage, 0);
  t.equal(logPhaseLines(p).length, 2, 'no state reused another one: nothing said of it');
  t.equal(logPhaseSummary([cases[2]!]), undefined, 'no write-log state, no summary');
  t.match(logPhaseLines(p)[0]!, /2 checked, 2000 states per minute of case time/);
  const reused = logPhaseSummary([cases[0]!, { ...cases[1]!, sameImageAs: 'a' }])!;
  t.equal(reused.sameImage, 1, 'a state with the image of an earlier one is counted');
  t.match(logPhaseLines(reused)[2]!, /1 of them had the recovered image of an earlier state of their unit/);
});

t.test('the text report ends with the states per minute, just before the verdict', async (t) => {
  const s = summaryOf([logCase('a', 30, { materialiseMs: 3 })]);
  const lines = textReport(s).trimEnd().split('\n');
  t.match(lines.at(-3)!, /^Write-log states: 1 checked, 2000 states per minute/);
  t.match(lines.at(-2)!, /materialise 3 ms/);
  t.match(lines.at(-1)!, /^Result: PASS/);
});

t.test('the write-log line says how many fast commits the recorded logs hold, once per unit', async (t) => {
  const withFc = (id: string, unit: string, fastCommits?: number) => {
    const c = logCase(id, 30, { materialiseMs: 3 });
    return { ...c, fired: { ...c.fired, unit, ...(fastCommits !== undefined ? { fastCommits } : {}) } } as CaseResult;
  };
  const s = summaryOf([
    withFc('a', 'fc/log/r1', 4),
    withFc('b', 'fc/log/r1', 4),
    withFc('c', 'fc2/log/r1', 1),
    withFc('d', 'plain/log/r1'),
  ]);
  const line = textReport(s)
    .split('\n')
    .find((l) => l.startsWith('write-log:'));
  t.match(line, /4 crash states from 3 recorded run\(s\): 4 prefix, 0 power-loss; the logs hold 5 fast commit\(s\)$/);
  const none = { ...s, cases: [withFc('d', 'plain/log/r1')] } satisfies RunSummary;
  t.notMatch(textReport(none), /fast commit/, 'no fast commit, nothing said');
});

t.test("an in-memory temp dir lives on /dev/shm when it has room, and a dead owner's is swept", async (t) => {
  const d = await TempDir.create('mem-test', { inMemory: 1 << 20 });
  t.ok(d.path.startsWith('/dev/shm/'), d.path);
  const big = await TempDir.create('mem-test', { inMemory: Number.MAX_SAFE_INTEGER });
  t.notOk(big.path.startsWith('/dev/shm/'), 'no room: the usual temp folder');
  await big.remove();
  // As if its owner had been SIGKILLed: the owner's pid in its name is no process.
  const { rename } = await import('node:fs/promises');
  const orphan = d.path.replace(`-p${process.pid}-`, '-p2147483646-');
  await rename(d.path, orphan);
  const swept = await sweepStaleTempDirs();
  t.ok(swept.includes(orphan), 'swept');
  await t.rejects(access(orphan));
  await d.remove();
});
