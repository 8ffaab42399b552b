import t from 'tap';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { textReport } from '../../harness/report/text.ts';
import { runReportHtml } from '../../harness/report/html/run-report.ts';
import { countStatuses, type RunSummary } from '../../harness/results/run.ts';
import { describeHold } from '../../harness/crash/points/hold.ts';
import type { HeldInterleaving } from '../../harness/crash/crash-state.ts';

// A run's reports count the interleavings held at a kernel point and how
// many reached their marker (issue 24's acceptance): summary.json's counts,
// the text report's line, the HTML run facts.
const base = JSON.parse(await readFile(new URL('../fixtures/report/summary.json', import.meta.url), 'utf8')) as RunSummary;
const dir = await mkdtemp(join(tmpdir(), 'held-report-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

function held(h: Omit<HeldInterleaving, 'line' | 'step' | 'point' | 'hit'>): HeldInterleaving {
  const full = { step: 'migrate', point: 'ext4_ext_migrate after finish_range()', hit: 1, ...h };
  return { ...full, line: describeHold(full) };
}
const marker = held({
  reached: true,
  ended: 'marker',
  markerReached: true,
  heldCpu: 0,
  ranCpus: [1],
  heldMs: 120,
  progress: { before: 0, after: 8, wanted: 8 },
});
const limit = held({
  reached: true,
  ended: 'limit',
  markerReached: false,
  heldCpu: 0,
  ranCpus: [1],
  heldMs: 3000,
  progress: { before: 2, after: 2, wanted: 10 },
});
const notHit = held({ reached: false, ended: 'not-hit', markerReached: false });

function withHolds(holds: HeldInterleaving[]): RunSummary {
  const cases = base.cases.map((c, i) =>
    i < holds.length ? { ...c, fired: { ...(c.fired ?? { kind: 'none' as const }), held: holds[i]! } } : c,
  );
  return { ...base, cases, counts: countStatuses(cases) };
}

t.test(
  'summary counts: held interleavings, those that reached their marker, those at their limit, holds never hit',
  async (t) => {
    const s = withHolds([marker, marker, limit, notHit]);
    t.same(s.counts.held, { asked: 4, ran: 3, markerReached: 2, limit: 1, notHit: 1 });
    t.equal(countStatuses(base.cases).held, undefined, 'a run with no hold has no held counts');
    t.same(
      Object.keys(countStatuses(base.cases)),
      ['total', 'pass', 'fail', 'error', 'notReached', 'notRun'],
      'and its counts are as before',
    );
  },
);

t.test('the text report says how many held interleavings ran and how many reached their marker', async (t) => {
  const text = textReport(withHolds([marker, marker, limit, notHit]));
  t.match(
    text,
    /^held: {6}3 interleaving\(s\) held at a kernel point, 2 reached their marker, 1 ended at their limit; 1 case\(s\) never hit the hold point$/m,
  );
  t.match(textReport(withHolds([marker])), /^held: {6}1 interleaving\(s\) held at a kernel point, 1 reached their marker$/m);
  t.notMatch(textReport(base), /^held:/m, 'no line for a run without holds');
  const failing = withHolds(base.cases.map(() => limit));
  t.match(
    textReport(failing),
    /FAIL .*\n(.*\n)*? {4}held: vCPU 0 held at .* marker not reached, the hold ended at its limit/,
    'a failing case shows its hold',
  );
});

t.test('the HTML report names the held counts among the run facts', async (t) => {
  const html = await runReportHtml(withHolds([marker, limit]), dir);
  t.match(
    html,
    /<dt>held<\/dt><dd><span id="held-counts">2 interleaving\(s\) held at a kernel point, 1 reached their marker, 1 ended at their limit<\/span>/,
  );
  t.notMatch(await runReportHtml(base, dir), /held-counts/);
});
