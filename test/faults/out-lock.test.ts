import t from 'tap';
import { mkdtemp, readFile, rm, writeFile, access } from 'node:fs/promises';
import { tmpdir, hostname } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { runSuite } from '../../harness/run/runner.ts';
import { outLockFile } from '../../harness/run/out-lock.ts';
import { FakeLauncher } from '../helpers/fake-machine.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';
import { qcrash } from '../helpers/cli.ts';

// Two runs on one --out: the second is refused at once (exit 2), whether the
// first is still preparing or already running cases; a lock left by a killed
// run is reported with what to do, and --resume takes it over.
const dir = await mkdtemp(join(tmpdir(), 'faults-lock-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const scenario = await writeStepsScenario(join(dir, 'a.yaml'));
const other = await writeStepsScenario(join(dir, 'b.yaml'), { none: 'first' });
const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

t.test('a second run on a folder a run holds exits 2 at once; the first finishes alone', async (t) => {
  const out = join(dir, 'shared');
  // Each command takes 8 s in the scripted guest: the first run is busy for a minute or more.
  const machines = new FakeLauncher(() => ({ script: () => ({ ms: 8000 }) }));
  let firstDone = false;
  const first = runSuite({
    inputs: [scenario],
    kernel: fakeKernel('fake'),
    seed: 1,
    jobs: 1,
    machines,
    snapshots: false,
    keep: 'none',
    out,
  }).finally(() => (firstDone = true));
  while (!(await exists(join(out, outLockFile)))) await new Promise((r) => setTimeout(r, 20));
  const owner = JSON.parse(await readFile(join(out, outLockFile), 'utf8'));
  t.match(owner, { pid: process.pid, host: hostname() });
  const started = Date.now();
  const second = await qcrash(['run', other, '--out', out, '--format', 'none']);
  t.equal(second.code, 2, second.stderr);
  t.match(
    second.stderr,
    new RegExp(
      `--out ${out} is in use by qcrash pid ${process.pid} on ${hostname()} \\(since .*\\): two runs in one folder would mix their results; wait for it to finish, or choose another --out`,
    ),
  );
  const resumed = await qcrash(['run', '--resume', out, '--format', 'none']);
  t.equal(resumed.code, 2, 'a resume of a run that is still running is refused too');
  t.match(resumed.stderr, /is in use by qcrash pid/);
  t.notOk(firstDone, `both refused while the first run was still running (${Date.now() - started} ms)`);
  const r = await first;
  t.equal(r.summary.counts.pass, 3, 'the first run has its own cases only');
  t.same(
    r.summary.scenarios.map((s) => s.name),
    ['a'],
  );
  t.notOk(await exists(join(out, outLockFile)), 'the lock is gone when the run ends');
});

t.test('a stale lock: a new run is told what to do; --resume takes it over', async (t) => {
  const out = join(dir, 'stale');
  const machines = new FakeLauncher();
  const run = await runSuite({
    inputs: [scenario],
    kernel: fakeKernel('fake'),
    seed: 1,
    jobs: 1,
    machines,
    snapshots: false,
    keep: 'none',
    out,
  });
  t.equal(run.summary.counts.pass, 3);
  // The lock a SIGKILLed run leaves: its pid no longer runs.
  const dead = await execa('sh', ['-c', 'echo $$']);
  const pid = Number(dead.stdout.trim());
  await writeFile(join(out, outLockFile), JSON.stringify({ pid, host: hostname(), startedAt: '2026-01-01T00:00:00Z' }));
  const fresh = join(dir, 'stale-new');
  await rm(fresh, { recursive: true, force: true });
  await execa('mkdir', ['-p', fresh]);
  await writeFile(join(fresh, outLockFile), JSON.stringify({ pid, host: hostname(), startedAt: '2026-01-01T00:00:00Z' }));
  const again = await qcrash(['run', other, '--out', fresh, '--format', 'none']);
  t.equal(again.code, 2);
  t.match(
    again.stderr,
    new RegExp(
      `--out ${fresh} has a stale lock: qcrash pid ${pid} started a run there at 2026-01-01T00:00:00Z and is no longer running \\(killed\\?\\)\\. Finish that run with: qcrash run --resume ${fresh} \\(which takes the lock over\\), or remove ${join(fresh, outLockFile)}`,
    ),
  );
  const resumed = await runSuite({
    inputs: [],
    kernel: fakeKernel('fake'),
    jobs: 1,
    machines,
    keep: 'none',
    snapshots: false,
    resume: out,
  });
  t.equal(resumed.summary.counts.pass, 3, 'the resume ran (nothing was left to do)');
  t.notOk(await exists(join(out, outLockFile)), 'and released the lock it took over');
});

t.test('a lock held on another host counts as held, with the file to remove if that run is gone', async (t) => {
  const out = join(dir, 'foreign');
  await execa('mkdir', ['-p', out]);
  await writeFile(join(out, outLockFile), JSON.stringify({ pid: 1, host: 'elsewhere', startedAt: '2026-01-01T00:00:00Z' }));
  const r = await qcrash(['run', other, '--out', out, '--format', 'none']);
  t.equal(r.code, 2);
  t.match(r.stderr, `is in use by qcrash pid 1 on elsewhere (since 2026-01-01T00:00:00Z)`);
  t.match(r.stderr, `if that run is gone, remove ${join(out, outLockFile)}`);
});
