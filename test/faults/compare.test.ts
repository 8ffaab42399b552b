import t from 'tap';
import { mkdtemp, rm, writeFile, readFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunStore } from '../../harness/results/store.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import { qcrash } from '../helpers/cli.ts';

// `qcrash compare` as the nightly job runs it: a case that got worse or
// went missing fails the night even without a new finding signature, lost
// coverage is listed (and fails with --strict), and a run it cannot read
// is refused, never compared as if empty. The runs are built from the
// summary of a real run of the default suite (test/fixtures/report/).
const real = JSON.parse(await readFile(new URL('../fixtures/report/summary.json', import.meta.url), 'utf8')) as RunSummary;
const passing = real.cases.filter((c) => c.status === 'pass').slice(0, 4);
const dir = await mkdtemp(join(tmpdir(), 'faults-compare-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

async function runDir(name: string, cases: CaseResult[], opts: { summary?: boolean } = {}): Promise<string> {
  const { cases: _c, counts: _n, finishedAt: _f, ...meta } = real;
  const store = await RunStore.create(join(dir, name), { ...meta, runId: name });
  for (const c of cases) await store.writeCase(c);
  if (opts.summary !== false) await store.writeSummary(store.summary(cases, true));
  return store.dir;
}
const night1 = await runDir('night-1', passing);
const compare = (...args: string[]) => qcrash(['compare', ...args]);

t.test('a night where a passing case errors is a failed night', async (t) => {
  const worse = await runDir(
    'worse',
    passing.map((c, i) =>
      i === 1 ? { ...c, status: 'error' as const, error: 'VM did not start', findings: [], failing: [] } : c,
    ),
  );
  const r = await compare(night1, worse);
  t.equal(r.code, 1);
  t.match(r.stdout, /NEW findings: 0/, 'no new finding signature');
  t.match(r.stdout, new RegExp(`WORSE cases: 1\\n {2}${passing[1]!.id}: pass -> error`));
});

t.test('a case that vanished is a failed night', async (t) => {
  const fewer = await runDir('fewer', passing.slice(0, 3));
  const r = await compare(night1, fewer);
  t.equal(r.code, 1);
  t.match(r.stdout, new RegExp(`MISSING cases \\(in night-1, not in fewer\\): 1\\n {2}${passing[3]!.id}`));
});

t.test('a case that no longer reaches its point is lost coverage: listed, and a failure with --strict', async (t) => {
  const lost = await runDir(
    'lost',
    passing.map((c, i) => (i === 0 ? { ...c, status: 'not-reached' as const } : c)),
  );
  const r = await compare(night1, lost);
  t.equal(r.code, 0);
  t.match(r.stdout, /lost coverage \(crash point not reached\): 1/);
  const strict = await compare(night1, lost, '--strict');
  t.equal(strict.code, 1);
});

t.test('runs that cannot be read are refused, not compared as empty', async (t) => {
  const empty = join(dir, 'empty');
  await runDir('empty', [], { summary: false });
  const none = await compare(night1, empty);
  t.equal(none.code, 2);
  t.match(none.stderr, /empty holds no case: there is nothing to read/);

  const truncated = await runDir('truncated', passing);
  const text = await readFile(join(truncated, 'summary.json'), 'utf8');
  await writeFile(join(truncated, 'summary.json'), text.slice(0, text.length / 2));
  const cut = await compare(night1, truncated);
  t.equal(cut.code, 2);
  t.match(cut.stderr, /truncated\/summary\.json is damaged/);

  const corrupt = await runDir('corrupt', passing, { summary: false });
  const caseDir = join(corrupt, 'cases', ...passing[2]!.id.split('/'));
  await mkdir(caseDir, { recursive: true });
  await writeFile(join(caseDir, 'case.json'), '{"id": "half a file');
  const bad = await compare(night1, corrupt);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /case\.json is damaged .*: the run cannot be read/);

  const notRun = await compare(night1, join(dir, 'no-such-run'));
  t.equal(notRun.code, 2);
  t.match(notRun.stderr, /no-such-run is not a qcrash run folder \(no run\.json\)/);
});

t.test('the same night compared with itself is clean', async (t) => {
  const r = await compare(night1, night1);
  t.equal(r.code, 0);
  t.match(r.stdout, /NEW findings: 0\nGONE findings: 0/);
});
