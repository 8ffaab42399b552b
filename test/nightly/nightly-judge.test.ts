import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { compareNights, nightly } from '../../harness/nightly/nightly.ts';
import { loadHistory } from '../../harness/results/history.ts';
import { ExitCode } from '../../harness/util/errors.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher, type FakeMachine } from '../helpers/fake-machine.ts';
import { freeBlockInUse } from '../helpers/damage.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';

// The nightly's judgement without kernel builds: a small git tree whose
// commits stand for kernels (the build is a seam that names a kernel after
// the revision), the real runner, store, oracles and history, and scripted
// machines that damage crash images (a real debugfs change the real e2fsck
// reports) on chosen nights. The same with real builds and mutant 03:
// test/nightly/nightly.test.ts.
// Every await of the setup comes before the first t.test: tap ends the root
// test once a subtest has run and nothing else is pending.
const tmp = await TempDir.create('nightly-judge');
t.teardown(() => tmp.remove());

// A real run's summary (see test/fixtures/report/): one failing case, one error, passes.
const fixture = JSON.parse(await readFile(new URL('../fixtures/report/summary.json', import.meta.url), 'utf8')) as RunSummary;

// A tiny git tree: nightly reads its branch head, the build seam names a kernel after it.
const tree = join(tmp.path, 'tree');
const gitEnv = {
  GIT_AUTHOR_NAME: 'Dev',
  GIT_AUTHOR_EMAIL: 'dev@example.org',
  GIT_COMMITTER_NAME: 'Dev',
  GIT_COMMITTER_EMAIL: 'dev@example.org',
};
const g = async (...args: string[]) => (await execa('git', args, { cwd: tree, env: gitEnv })).stdout.trim();
await execa('git', ['init', '-q', '-b', 'main', tree]);
async function commit(text: string): Promise<string> {
  await writeFile(join(tree, 'migrate.c'), text);
  await g('add', 'migrate.c');
  await g('commit', '-q', '-m', text);
  return g('rev-parse', 'HEAD');
}
const built: string[] = [];
const build = async (o: { rev?: string }): Promise<KernelInfo> => {
  built.push(o.rev!);
  return fakeKernel(`fake-${o.rev!.slice(0, 12)}`, `fake-${o.rev!.slice(0, 7)}`);
};

const scenario = await writeStepsScenario(join(tmp.path, 'nights.yaml'));

// The second revision breaks what a kill after sync leaves (every time), and
// what a kill after mount leaves only on the first such kill (flaky).
let badRevision = '';
let mountKills = 0;
const machines = new FakeLauncher((spec: MachineSpec) => ({
  onKill: (m: FakeMachine) => {
    if (spec.kernel.id !== `fake-${badRevision.slice(0, 12)}`) return;
    const last = m.commands.at(-1);
    if (last === 'sync' || (last === 'mount' && ++mountKills === 1)) freeBlockInUse(m.spec.disk.path);
  },
}));
const history = join(tmp.path, 'history');
const night = () => nightly({ tree, branch: 'main', history, scenarios: [scenario], jobs: 1, machines, build, confirmRuns: 1 });

t.test('three nights: nothing, a new finding and a flaky one, then the same head again', async (t) => {
  const good = await commit('one');
  const first = await night();
  t.equal(first.exitCode, ExitCode.pass, 'the first night has nothing to compare with');
  t.notOk(first.previous);
  t.same(first.fresh, []);
  t.equal(first.revision, good);

  badRevision = await commit('two');
  const second = await night();
  t.equal(second.previous?.runId, first.runId, 'compared with last night');
  t.equal(second.revision, badRevision);
  t.same(
    second.fresh.map((f) => [f.signature, f.verdict, f.confirmed, f.reruns]),
    [
      ['nights | after-sync | e2fsck | corruption | 0x050005', 'new', 1, 1],
      ['nights | after-mount | e2fsck | corruption | 0x050005', 'flaky', 0, 1],
    ].sort(),
    'after-sync is new and came back on the rerun; after-mount did not',
  );
  t.same(
    second.fresh.find((f) => f.verdict === 'new')!.nights,
    { seen: 1, ran: 2 },
    'seen on one of the two nights that ran its case',
  );
  t.equal(second.exitCode, ExitCode.failed, 'exit 1: a new finding that reproduced');
  const text = await readFile(join(second.dir, 'nightly.txt'), 'utf8');
  t.match(text, /NEW since last night \(reproduced on rerun\): 1\n {2}nights \| after-sync/);
  t.match(
    text,
    /flaky \(new since last night, not seen on every rerun\): 1\n {2}nights \| after-mount .* rerun 0\/1, seen on 1 of 2 night/,
  );

  const third = await night();
  t.ok(third.sameRevision, 'the branch did not move');
  t.same(third.fresh, [], 'nothing new: last night already had it');
  t.same(third.known, ['nights | after-sync | e2fsck | corruption | 0x050005'], 'still failing');
  t.same(third.gone, ['nights | after-mount | e2fsck | corruption | 0x050005'], 'the flaky one did not show');
  t.equal(third.exitCode, ExitCode.pass);

  const index = await loadHistory(join(history, 'history.json'));
  t.same(
    index.runs.map((r) => [r.branch, r.revision]),
    [
      ['main', good],
      ['main', badRevision],
      ['main', badRevision],
    ],
    'the index keeps each night with its branch and revision',
  );
  t.ok(
    await readFile(join(history, 'history.html')).then(
      () => true,
      () => false,
    ),
    'history.html written',
  );
  t.same(built, [good, badRevision, badRevision], 'each night builds the branch head');
});

t.test('a branch the tree does not have is a usage error that says to fetch it', async (t) => {
  await t.rejects(nightly({ tree, branch: 'no-such-branch', history, scenarios: [scenario], machines, build }), {
    exitCode: ExitCode.usage,
    message: /fetch the branch first/,
  });
});

t.test('a case that no longer reaches its point is lost coverage, not a new finding', async (t) => {
  const lastNight: RunSummary = { ...fixture, runId: 'n1' };
  const tonight: RunSummary = {
    ...fixture,
    runId: 'n2',
    cases: fixture.cases.map((c) =>
      c.id === 'durability/after-fsync/r1'
        ? { ...c, status: 'not-reached', error: 'crash point never fired' }
        : c.id === 'commit-sweep/after-sync/r1'
          ? {
              ...c,
              status: 'fail',
              failing: [{ ...fixture.cases[1]!.failing[0]!, code: '0x050005' }],
              findings: [...c.findings, { ...fixture.cases[1]!.failing[0]!, code: '0x050005' }],
            }
          : c,
    ),
  };
  const n = compareNights(lastNight, tonight);
  t.same(
    n.added.map((a) => [a.signature, a.caseIds]),
    [['commit-sweep | after-sync | e2fsck | corruption | 0x050005', ['commit-sweep/after-sync/r1']]].map(([s, ids]) => [
      String(s).replace(' | e2fsck', ` | ${fixture.cases[1]!.failing[0]!.recovery ?? '-'}`),
      ids,
    ]),
    "only the failing case's signature is new",
  );
  t.same(n.lostCoverage, [{ id: 'durability/after-fsync/r1', from: 'pass' }], 'the unreached case is lost coverage');
  t.same(
    n.known,
    ['commit-sweep | commit-migrate-1 | ' + `${fixture.cases[1]!.failing[0]!.recovery ?? '-'} | corruption | 0x00003d`],
    'the failure of both nights is known',
  );
  t.same(n.gone, []);
  const fewer = compareNights(lastNight, { ...tonight, cases: tonight.cases.slice(1) });
  t.same(fewer.missingCases, [fixture.cases[0]!.id], 'a case the suite lost is listed');
});

t.test('nightly --line 6.12 builds the head with the 6.12 line (its config fragments)', async (t) => {
  const lines: Array<string | undefined> = [];
  const lineBuild = async (o: { rev?: string; line?: string }): Promise<KernelInfo> => {
    lines.push(o.line);
    return build(o);
  };
  await nightly({
    tree,
    branch: 'main',
    history: join(tmp.path, 'history-6.12'),
    scenarios: [scenario],
    jobs: 1,
    machines,
    build: lineBuild,
    confirmRuns: 1,
    line: '6.12',
  });
  t.same(lines, ['6.12']);
});
