import t, { type Test } from 'tap';
import { mkdtemp, rm, writeFile, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { execFileSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { Vm } from '../../harness/vm/machine/vm.ts';
import { qcrash } from '../helpers/cli.ts';
import { qcrashBin, qemuPids } from '../helpers/env.ts';

// Faults in the middle of real runs (stock kernel, small-4k, e2fsck
// recovery): a QEMU killed under a case, resuming, a results folder that
// fills up while the guest writes. Each asserts the exit code, the message,
// that no QEMU or temp dir is left, and that no result is lost.
const dir = await mkdtemp(join(tmpdir(), 'faults-run-'));
const tmp = join(dir, 'tmp');
await mkdir(tmp);
t.teardown(() => rm(dir, { recursive: true, force: true }));
const env = { QCRASH_TMPDIR: tmp };

async function scenario(name: string, text: string): Promise<string> {
  const f = join(dir, name);
  await writeFile(f, text);
  return f;
}

async function clean(t: Test) {
  t.same(
    (await readdir(tmp)).filter((f) => f.startsWith('qcrash-')),
    [],
    'no temp dir left',
  );
  t.same(qemuPids(tmp), [], 'no QEMU left');
}

async function cases(out: string): Promise<Array<{ id: string; status: string; error?: string }>> {
  const files = ((await readdir(join(out, 'cases'), { recursive: true })) as string[]).filter((f) => f.endsWith('case.json'));
  return Promise.all(files.sort().map(async (f) => JSON.parse(await readFile(join(out, 'cases', f), 'utf8'))));
}

/** Wait until the run has prepared (its folder exists) and a case's QEMU runs. */
async function caseVmRunning(out: string): Promise<void> {
  const deadline = Date.now() + 300_000;
  const started = () =>
    stat(join(out, 'run.json')).then(
      () => true,
      () => false,
    );
  while (!((await started()) && qemuPids(tmp).length) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

const two = `recipe: small-4k
recovery: [e2fsck]
steps:
  - mount
  - sleep: 4000
  - sync
kill:
  - after: sync
repeat: 2
`;

t.test('a QEMU killed under a case makes it an error; --resume runs just that case again', async (t) => {
  const f = await scenario('two.yaml', two);
  const out = join(dir, 'killed');
  const child = spawn(process.execPath, [qcrashBin, 'run', f, '--jobs', '1', '--out', out, '--format', 'none'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  // The run's folder exists once preparation (image, snapshot save) is over: a QEMU after that is a case's.
  await caseVmRunning(out);
  // Let the case get into its workload (the 4 s sleep) before its QEMU dies.
  await new Promise((r) => setTimeout(r, 2500));
  const [victim] = qemuPids(tmp);
  t.ok(victim, 'the first case has a QEMU');
  process.kill(victim!, 'SIGKILL');
  t.equal(await exited, 3, 'exit 3: a case could not run');
  const first = await cases(out);
  t.same(first.map((c) => c.status).sort(), ['error', 'pass'], 'one case errored, the other ran');
  t.match(
    first.find((c) => c.status === 'error')!.error,
    /agent channel closed|QEMU exited|killed by SIGKILL/,
    'the error says the VM died',
  );
  const again = await qcrash(['run', '--resume', out, '--format', 'none'], { env });
  t.equal(again.code, 0, `resume: ${again.stderr.slice(-500)}`);
  t.match(again.stderr, /: 1 case\(s\) on /, 'only the errored case ran again');
  t.same(
    (await cases(out)).map((c) => c.status),
    ['pass', 'pass'],
    'both cases pass now, neither result lost',
  );
  const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
  t.equal(summary.counts.total, 2);
  await clean(t);
});

t.test('--resume runs the run as run.json has it: other options and changed scenarios are refused', async (t) => {
  const f = await scenario('resume.yaml', two.replace('repeat: 2', 'repeat: 1'));
  const out = join(dir, 'resume');
  const r = await qcrash(['run', f, '--out', out, '--format', 'none'], { env });
  t.equal(r.code, 0, r.stderr.slice(-300));
  const run = JSON.parse(await readFile(join(out, 'run.json'), 'utf8'));
  t.match(run.config, { inputs: [f], kernel: 'stock', keep: 'failed', snapshots: true });
  t.match(run.qcrash, { build: /^[0-9a-f]{16}$/ });
  const filter = await qcrash(['run', '--resume', out, '--filter', 'x'], { env });
  t.equal(filter.code, 2);
  t.match(filter.stderr, /--resume .* finishes the run as its run.json configured it; --filter cannot change it/);
  const again = await qcrash(['run', f, '--out', out], { env });
  t.equal(again.code, 2);
  t.match(again.stderr, /already holds a run: finish it with --resume/);
  await writeFile(f, two.replace('repeat: 2', 'repeat: 1').replace('sleep: 4000', 'sleep: 10'));
  const changed = await qcrash(['run', '--resume', out], { env });
  t.equal(changed.code, 2);
  t.match(changed.stderr, /resume\.yaml changed since the run in .* started/);
  run.qcrash.build = '0000000000000000';
  await writeFile(join(out, 'run.json'), JSON.stringify(run));
  const build = await qcrash(['run', '--resume', out], { env });
  t.equal(build.code, 2);
  t.match(build.stderr, /was made by another qcrash build \(0000000000000000/);
  await clean(t);
});

t.test('Ctrl-C says how to finish the run', async (t) => {
  const f = await scenario('long.yaml', two.replace('sleep: 4000', 'sleep: 60000'));
  const out = join(dir, 'interrupted');
  const child = spawn(process.execPath, [qcrashBin, 'run', f, '--jobs', '1', '--out', out], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  await caseVmRunning(out);
  child.kill('SIGINT');
  t.equal(await exited, 130);
  t.match(stderr, new RegExp(`finish the run with: qcrash run --resume ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  await clean(t);
});

t.test("the VM's private dir and sockets are closed to other users", async (t) => {
  const kernel = await stockKernel();
  const initrd = (await buildInitramfs(kernel)).path;
  const disk = join(dir, 'empty.img');
  await writeFile(disk, Buffer.alloc(1 << 20));
  await using vm = await Vm.launch({ kernel, initrd, disk: { path: disk, format: 'raw' }, waitAgent: false });
  for (const p of [vm.dir.path, vm.paths.qmp, vm.paths.agent, vm.paths.console]) {
    const mode = (await stat(p)).mode & 0o777;
    t.equal(mode & 0o077, 0, `${p.slice(vm.dir.path.length) || 'the dir'}: mode ${mode.toString(8)}`);
  }
});

const notRoot = process.getuid?.() !== 0 ? 'mounting a small tmpfs needs root' : false;
t.test(
  'a results folder that fills while the guest writes: the case ends at once, the run says how to resume',
  { skip: notRoot },
  async (t) => {
    const base = await buildImage(await loadRecipe('small-4k'));
    const imageBytes = (await stat(base.path)).blocks * 512;
    const mnt = join(dir, 'small');
    await mkdir(mnt);
    // Room for the run's estimate (the case disk and the run's copy of the base, each the image's allocated
    // size, a MiB for the kept case's changed blocks, a MiB of logs), not for what the guest writes:
    // the case disk is a sparse copy (the journal's zeros are holes), plus 20 MiB of new data.
    const sizeMiB = Math.ceil((2 * imageBytes + (2 << 20)) / (1 << 20)) + 1;
    const probe = join(dir, 'probe.img');
    execFileSync('cp', ['--sparse=always', base.path, probe]);
    const copyBytes = (await stat(probe)).blocks * 512;
    t.ok(
      copyBytes + (20 << 20) > sizeMiB << 20,
      `the guest's writes (${copyBytes >> 20} MiB copy + 20 MiB) exceed the ${sizeMiB} MiB folder`,
    );
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', mnt]);
    t.teardown(() => void execFileSync('umount', ['-l', mnt]));
    const f = await scenario(
      'fill.yaml',
      `recipe: small-4k
recovery: [e2fsck]
steps:
  - mount
  - write: { path: /big, size: 20971520 }
  - sync
kill:
  - after: sync
`,
    );
    const out = join(mnt, 'run');
    const started = Date.now();
    const r = await qcrash(['run', f, '--out', out, '--format', 'none', '--keep', 'all'], { env });
    const secs = (Date.now() - started) / 1000;
    t.equal(r.code, 3, 'exit 3');
    t.ok(secs < 100, `ended in ${Math.round(secs)} s, not after the 120 s step timeout`);
    t.match(r.stderr, /disk is full|host disk full/, 'says the disk is full');
    t.match(
      r.stderr,
      new RegExp(`qcrash run --resume ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
      'and how to finish the run',
    );
    t.notMatch(r.stderr, /internal error|\n\s+at /, 'no stack trace');
    const written = await readdir(join(out, 'cases'), { recursive: true }).catch(() => [] as string[]);
    t.notOk(
      (written as string[]).some((x) => /\.tmp$/.test(x)),
      'no half-written result file',
    );
    // Make room and finish: the case runs again and now passes.
    execFileSync('mount', ['-o', 'remount,size=256m', mnt]);
    const resumed = await qcrash(['run', '--resume', out, '--format', 'none'], { env });
    t.equal(resumed.code, 0, resumed.stderr.slice(-400));
    t.same(
      (await cases(out)).map((c) => c.status),
      ['pass'],
    );
    await clean(t);
  },
);
