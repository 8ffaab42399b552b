import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qcrashBin, qemuPids } from '../helpers/env.ts';

// A real `qcrash run` in a child process, interrupted while its VMs run.
// Each test gets its own QCRASH_TMPDIR so it sees only its own temp dirs.
const scenario = `recipe: small-4k
steps:
  - mount: [commit=1]
  - sleep: 60000
kill:
  - after: sleep
repeat: 2
`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function startRun(t: { teardown(fn: () => unknown): void; equal(...a: any[]): unknown }) {
  const tmp = await mkdtemp(join(tmpdir(), 'signals-test-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const file = join(tmp, 'long.yaml');
  await writeFile(file, scenario);
  const env = { ...process.env, QCRASH_TMPDIR: tmp };
  const child = spawn(
    process.execPath,
    [qcrashBin, 'run', file, '--jobs', '2', '--out', join(tmp, 'out'), '--recovery', 'e2fsck'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  // Wait until both VMs of the run are up.
  const deadline = Date.now() + 120_000;
  while (qemuPids(tmp).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  t.equal(qemuPids(tmp).length, 2, 'two VMs running');
  return { tmp, child, exited, env, stderr: () => stderr };
}

async function dirsIn(tmp: string) {
  return (await readdir(tmp)).filter((f) => f.startsWith('qcrash-'));
}

async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}

t.test('SIGINT in the middle of a run stops every VM and removes the temp dirs', async (t) => {
  const run = await startRun(t);
  run.child.kill('SIGINT');
  const ex = await run.exited;
  t.equal(ex.code, 130, 'exits 130 like an interrupted shell command');
  t.same(qemuPids(run.tmp), [], 'no QEMU left');
  t.same(await dirsIn(run.tmp), [], 'no temp dir left');
  t.match(run.stderr(), /SIGINT received, stopping VMs/);
});

t.test("SIGKILL of the harness takes its VMs down; the next run removes the dead run's temp dirs", async (t) => {
  const run = await startRun(t);
  run.child.kill('SIGKILL');
  await run.exited;
  t.ok(await until(() => qemuPids(run.tmp).length === 0, 10_000), 'QEMU died with its parent (parent-death signal)');
  t.ok((await dirsIn(run.tmp)).length > 0, 'the killed run could not clean its temp dirs');
  // The next run sweeps them before it does anything else, even one that then fails on its input.
  const next = spawn(process.execPath, [qcrashBin, 'run', join(run.tmp, 'missing.yaml')], { env: run.env, stdio: 'ignore' });
  const code = await new Promise<number | null>((r) => next.on('exit', r));
  t.equal(code, 2, 'the next run fails on its missing scenario with exit 2');
  t.same(await dirsIn(run.tmp), [], "and has removed the dead run's temp dirs");
});
