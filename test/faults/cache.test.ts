import t, { type Test } from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readdir, readFile, rm, stat, truncate, writeFile, open, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qcrashBin, qemuPids, qcrashTempDirs } from '../helpers/env.ts';

// The cache faults of issue 12, item 1, each made for real on a private
// cache (QCRASH_CACHE in a temp dir: the shared ~/.cache/qcrash is never
// touched) and run through a real `qcrash run` child on the stock kernel:
// the damaged entry is named on stderr, rebuilt, and the run passes with
// every result written, no QEMU and no temp dir left behind.
const root = await mkdtemp(join(tmpdir(), 'faults-cache-'));
const cache = join(root, 'cache');
const tmp = join(root, 'tmp');
await mkdir(tmp);
t.teardown(() => rm(root, { recursive: true, force: true }));
// In-process calls (the restore test) use the same private cache and temp dir.
process.env.QCRASH_CACHE = cache;
process.env.QCRASH_TMPDIR = tmp;
const env = { ...process.env, QCRASH_CACHE: cache, QCRASH_TMPDIR: tmp };

const scenario = join(root, 'faults.yaml');
await writeFile(
  scenario,
  `description: One quick case for the cache fault tests.
recipe: small-4k
steps:
  - mount: [commit=1]
  - migrate: { paths: [/shapes/direct-12] }
  - sync
kill:
  - after: sync
`,
);

interface Exit {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

function qcrash(args: string[], opts: { onStart?: (child: ReturnType<typeof spawn>) => void } = {}): Promise<Exit> {
  const child = spawn(process.execPath, [qcrashBin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  opts.onStart?.(child);
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

let runs = 0;
/** One run of the scenario into its own folder. */
async function run(extra: string[] = []): Promise<Exit & { out: string }> {
  const out = join(root, `out-${++runs}`);
  const r = await qcrash(['run', scenario, '--out', out, '--recovery', 'e2fsck', '--format', 'none', ...extra]);
  return { ...r, out };
}

/** Lines of stderr that are about the cache. */
function cacheLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('qcrash: cache: '));
}

/** Exactly these lines, in this order (t.match on arrays would let extra lines through). */
function expectLines(t: Test, lines: string[], patterns: RegExp[]): void {
  t.equal(lines.length, patterns.length, `${patterns.length} cache line(s): ${JSON.stringify(lines)}`);
  patterns.forEach((p, i) => t.match(lines[i] ?? '', p));
}

async function caseFiles(dir: string): Promise<string[]> {
  return ((await readdir(join(dir, 'cases'), { recursive: true }).catch(() => [])) as string[]).filter((f) =>
    f.endsWith('case.json'),
  );
}

/** The run passed its one case, and nothing is lost or left behind. */
async function passedCleanly(t: Test, r: Exit & { out: string }, what: string): Promise<void> {
  t.equal(r.code, 0, `${what}: exit 0 (stderr: ${r.stderr.trim().slice(-400)})`);
  const summary = JSON.parse(await readFile(join(r.out, 'summary.json'), 'utf8')) as { counts: { total: number; pass: number } };
  t.same(summary.counts.total, 1, `${what}: the case is in the summary`);
  t.same(summary.counts.pass, 1, `${what}: and passed`);
  t.equal((await caseFiles(r.out)).length, 1, `${what}: its case.json is written`);
  t.same(qemuPids(tmp), [], `${what}: no QEMU left`);
  t.same(await qcrashTempDirs(tmp), [], `${what}: no temp dir left`);
}

async function only(dir: string, pattern: RegExp): Promise<string> {
  const found = (await readdir(dir)).filter((n) => pattern.test(n));
  if (found.length !== 1) throw new Error(`expected one ${pattern} in ${dir}, found ${found.join(', ') || 'none'}`);
  return join(dir, found[0]!);
}

/** A rebuilt image is another disk: the saved state booted with the old one is saved anew. */
const stateRemade =
  /^qcrash: cache: saved VM state snapshots\/[0-9a-f]+\.state was bad \(made from another base image: [0-9a-f]{12}, now [0-9a-f]{12}\); rebuilt it$/;

const imageDir = () => only(join(cache, 'images'), /^small-4k-[0-9a-f]+$/);
const stateFile = () => only(join(cache, 'snapshots'), /^[0-9a-f]+\.state$/);

async function flipByte(file: string, offset: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] = b[0]! ^ 0x55;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

t.test('a cold cache is built and every entry sealed; verify says ok', async (t) => {
  const r = await run();
  await passedCleanly(t, r, 'cold run');
  t.same(cacheLines(r.stderr), [], 'nothing was bad');
  const v = await qcrash(['cache', 'verify']);
  t.equal(v.code, 0, 'cache verify exits 0');
  t.match(v.stdout, /^ok {3}images\/small-4k-[0-9a-f]+ /m);
  t.match(v.stdout, /^ok {3}snapshots\/[0-9a-f]+\.state /m);
  t.match(v.stdout, /^ok {3}initramfs\/[0-9a-f]+ /m);
  t.match(v.stdout, /3 entries in .*: 3 ok, 0 bad/);
});

t.test('image data changed on disk: rebuilt, not a data finding', async (t) => {
  const img = join(await imageDir(), 'base.img');
  // A data block of a file of the recipe, as a disk error or a stray write would change it.
  const blk = Number(
    execFileSync('debugfs', ['-R', 'bmap /shapes/direct-12 0', img], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim(),
  );
  t.ok(blk > 0, `/shapes/direct-12 starts at block ${blk}`);
  await flipByte(img, blk * 4096 + 100);
  const v = await qcrash(['cache', 'verify']);
  t.equal(v.code, 1, 'cache verify exits 1');
  t.match(v.stdout, /^bad {2}images\/small-4k-[0-9a-f]+ .*: base\.img changed since it was made/m);
  const r = await run();
  await passedCleanly(t, r, 'run after the change');
  expectLines(t, cacheLines(r.stderr), [
    /^qcrash: cache: base image images\/small-4k-[0-9a-f]+ was bad \(base\.img changed since it was made: its content digest differs\); rebuilt it$/,
    stateRemade,
  ]);
});

t.test('base.img deleted: rebuilt', async (t) => {
  await unlink(join(await imageDir(), 'base.img'));
  const r = await run();
  await passedCleanly(t, r, 'run after the deletion');
  expectLines(t, cacheLines(r.stderr), [
    /base image images\/small-4k-[0-9a-f]+ was bad \(base\.img is missing\); rebuilt it$/,
    stateRemade,
  ]);
  t.ok((await stat(join(await imageDir(), 'base.img'))).size > 0, 'base.img is back');
});

t.test('manifest truncated: rebuilt', async (t) => {
  const manifest = join(await imageDir(), 'manifest.json');
  await truncate(manifest, 100);
  const r = await run();
  await passedCleanly(t, r, 'run after the truncation');
  expectLines(t, cacheLines(r.stderr), [
    /base image images\/small-4k-[0-9a-f]+ was bad \(manifest\.json is truncated: 100 bytes, \d+ when it was made\); rebuilt it$/,
    stateRemade,
  ]);
  JSON.parse(await readFile(manifest, 'utf8'));
});

t.test('an entry made before checksums were recorded is rebuilt once', async (t) => {
  await unlink(join(await imageDir(), 'checksums.json'));
  const first = await run();
  await passedCleanly(t, first, 'first run');
  expectLines(t, cacheLines(first.stderr), [
    /base image images\/small-4k-[0-9a-f]+ was bad \(no checksums\.json: made by a qcrash that did not record checksums, or left half made\); rebuilt it$/,
    stateRemade,
  ]);
  // Once: the runs of the next tests name only what they damaged.
});

t.test('saved VM state truncated: saved anew, cases restore', async (t) => {
  const state = await stateFile();
  const size = (await stat(state)).size;
  await truncate(state, Math.floor(size / 2));
  const r = await run();
  await passedCleanly(t, r, 'run after the truncation');
  expectLines(t, cacheLines(r.stderr), [
    new RegExp(
      `saved VM state snapshots/[0-9a-f]+\\.state was bad \\([0-9a-f]+\\.state is truncated: ${Math.floor(size / 2)} bytes, ${size} when it was made\\); rebuilt it$`,
    ),
  ]);
  t.ok((await stat(await stateFile())).size > size / 2, 'the state is whole again');
});

t.test('saved VM state with one bit flipped in guest memory (QEMU would load it silently): saved anew', async (t) => {
  const state = await stateFile();
  await flipByte(state, Math.floor((await stat(state)).size / 2));
  const r = await run();
  await passedCleanly(t, r, 'run after the flip');
  expectLines(t, cacheLines(r.stderr), [
    /saved VM state snapshots\/[0-9a-f]+\.state was bad \([0-9a-f]+\.state changed since it was made: its content digest differs\); rebuilt it$/,
  ]);
});

t.test('a saved state that fails to load in QEMU is discarded and saved anew; the case boots', async (t) => {
  // The state is good when the run looks it up and bad when the case restores
  // it: the restore fails in QEMU itself, the path a damaged seal cannot catch.
  const { runSuite } = await import('../../harness/run/runner.ts');
  const { MachinePool } = await import('../../harness/vm/machine/pool.ts');
  const pool = new MachinePool({ slots: 1 });
  const truncated: string[] = [];
  const restores: string[] = [];
  const machines = {
    launch: async (spec: Parameters<typeof pool.launch>[0]) => {
      if (spec.role === 'workload' && spec.restoreFrom) {
        restores.push(spec.restoreFrom);
        if (!truncated.length) {
          await truncate(spec.restoreFrom, 4096);
          truncated.push(spec.restoreFrom);
        }
      }
      return pool.launch(spec);
    },
  };
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = (chunk: string | Uint8Array, ...rest: never[]) => {
    lines.push(String(chunk));
    return write(chunk, ...rest);
  };
  let outcome;
  try {
    outcome = await runSuite({
      inputs: [scenario],
      kernel: 'stock',
      out: join(root, 'out-restore'),
      recovery: ['e2fsck'],
      machines,
    });
  } finally {
    process.stderr.write = write;
  }
  t.equal(truncated.length, 1, 'the state was damaged before its restore');
  t.same(
    outcome.summary.counts,
    { total: 1, pass: 1, fail: 0, error: 0, notReached: 0, notRun: 0 },
    'the case passed (booted instead)',
  );
  t.equal((await caseFiles(outcome.dir)).length, 1, 'its case.json is written');
  expectLines(
    t,
    lines.filter((l) => l.startsWith('qcrash: cache: ')),
    [
      /^qcrash: cache: saved VM state snapshots\/[0-9a-f]+\.state did not load \(qemu: load of migration failed: .*\); discarded it and saved it anew; this case boots instead\n$/,
    ],
  );
  t.equal(pool.busy, 0, 'every machine was given back');
  t.same(qemuPids(tmp), [], 'no QEMU left');
  t.same(await qcrashTempDirs(tmp), [], 'no temp dir left');
  const v = await qcrash(['cache', 'verify']);
  t.equal(v.code, 0, 'the state saved anew verifies');
  t.match(v.stdout, new RegExp(`^ok {3}snapshots/${truncated[0]!.split('/').pop()!.replace('.', '\\.')} `, 'm'));
});

t.test('a restore from a file that is not a VM state, or is gone, is a VmRestoreError', async (t) => {
  const { Vm, VmRestoreError } = await import('../../harness/vm/machine/vm.ts');
  const { stockKernel } = await import('../../harness/kernel/stock.ts');
  const { buildInitramfs } = await import('../../harness/guest/initramfs.ts');
  const kernel = await stockKernel();
  const initrd = (await buildInitramfs(kernel)).path;
  const disk = join(root, 'restore-disk.img');
  await writeFile(disk, Buffer.alloc(1 << 20));
  const notState = join(root, 'not-a-state');
  await writeFile(notState, Buffer.alloc(1 << 16, 0x41));
  for (const [what, file, why] of [
    ['not a migration stream', notState, /Not a migration stream/],
    ['missing', join(root, 'no-such.state'), /cannot read the saved VM state .*no-such\.state/],
  ] as const) {
    const e = await Vm.launch({
      kernel,
      initrd,
      disk: { path: disk, format: 'raw' },
      restoreFrom: file,
      bootTimeoutMs: 60_000,
    }).then(
      async (vm) => {
        await vm.shutdown();
        return undefined;
      },
      (x: unknown) => x,
    );
    t.ok(e instanceof VmRestoreError, `${what}: VmRestoreError`);
    t.equal((e as InstanceType<typeof VmRestoreError>).stateFile, file, `${what}: names the state file`);
    t.match((e as Error).message, why, `${what}: says why`);
  }
  t.same(qemuPids(tmp), [], 'no QEMU left');
  t.same(await qcrashTempDirs(tmp), [], 'no temp dir left');
});

/** Start a run with no saved state and interrupt it while the state is being written. */
async function interruptSave(
  t: Test,
  signal: 'SIGINT' | 'SIGKILL',
): Promise<{ exit: Exit; partial: string; partialBytes: number }> {
  const snapshots = join(cache, 'snapshots');
  const states = async () => (await readdir(snapshots).catch(() => [] as string[])).filter((n) => n.endsWith('.state'));
  const had = (await states()).length;
  const clean = await qcrash(['cache', 'clean', '--snapshots']);
  t.equal(clean.code, 0, 'cache clean --snapshots exits 0');
  if (had)
    t.match(
      clean.stdout,
      /^removed {2}snapshots\/[0-9a-f]+\.state {2}\(\d+\.\d MiB\)$/m,
      'and says what it removed, with its size',
    );
  else t.match(clean.stdout, /^removed 0 items from /m, 'there was no state to remove');
  t.same(await states(), [], 'the run starts without a saved state');
  let partial = '';
  let partialBytes = 0;
  const exit = await qcrash(['run', scenario, '--out', join(root, `out-${signal}`), '--recovery', 'e2fsck', '--format', 'none'], {
    onStart: (child) => {
      const poll = async () => {
        for (let i = 0; i < 12_000 && child.exitCode === null; i++) {
          const p = (await readdir(snapshots).catch(() => [] as string[])).find((n) => n.endsWith('.partial'));
          const size = p ? (await stat(join(snapshots, p)).catch(() => ({ size: 0 }))).size : 0;
          // In the middle of the write, not at its first byte.
          if (p && size >= 1 << 20) {
            partial = join(snapshots, p);
            partialBytes = size;
            child.kill(signal);
            return;
          }
          await new Promise((r) => setTimeout(r, 5));
        }
      };
      void poll();
    },
  });
  t.ok(partial, `the run was interrupted while it wrote ${partial} (${partialBytes} bytes when seen)`);
  return { exit, partial, partialBytes };
}

t.test('Ctrl-C while a VM state is being saved removes the partial file', async (t) => {
  const { exit, partial } = await interruptSave(t, 'SIGINT');
  t.equal(exit.code, 130, 'exits 130');
  t.match(exit.stderr, /SIGINT received, stopping VMs/);
  t.notOk(
    await stat(partial).then(
      () => true,
      () => false,
    ),
    'the partial file is gone',
  );
  t.same(
    (await readdir(join(cache, 'snapshots'))).filter((n) => n.endsWith('.state')),
    [],
    'no state was left as if complete',
  );
  t.same(qemuPids(tmp), [], 'no QEMU left');
  t.same(await qcrashTempDirs(tmp), [], 'no temp dir left');
  // The run after it is the next test's, which starts from the same empty state.
});

t.test('SIGKILL while a VM state is being saved: the next run removes the partial file', async (t) => {
  const { exit, partial } = await interruptSave(t, 'SIGKILL');
  t.equal(exit.signal, 'SIGKILL', 'the harness was killed');
  const end = Date.now() + 10_000;
  while (qemuPids(tmp).length && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  t.same(qemuPids(tmp), [], 'QEMU died with it (parent-death signal)');
  t.ok(
    await stat(partial).then(
      () => true,
      () => false,
    ),
    'a killed process cannot remove its partial file',
  );
  const v = await qcrash(['cache', 'verify']);
  t.equal(v.code, 1, 'cache verify exits 1');
  t.match(v.stdout, /^bad {2}snapshots\/[0-9a-f]+\.state\.\d+\.partial .*: left by an interrupted save \(pid \d+ is gone\)$/m);
  const r = await run();
  expectLines(t, cacheLines(r.stderr), [
    /^qcrash: cache: removed 1 partial file\(s\) left by interrupted qcrash processes \(\d+\.\d MiB\): .*\.partial$/,
  ]);
  t.notOk(
    await stat(partial).then(
      () => true,
      () => false,
    ),
    'the partial file is gone',
  );
  await passedCleanly(t, r, 'the next run');
});

t.test('a built kernel whose bzImage changed is refused with what to do', async (t) => {
  // A fake built-kernel entry (no kernel is built here): sealed, then changed.
  const { builtKernelEntry } = await import('../../harness/kernel/build.ts');
  const id = 'build-0fau17ca5e0000000';
  const dir = join(cache, 'kernels', id);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'bzImage'), Buffer.alloc(1 << 20, 7));
  await writeFile(join(dir, 'System.map'), 'ffffffff81000000 T _text\n');
  await writeFile(
    join(dir, 'kernel.json'),
    JSON.stringify({
      id,
      kind: 'built',
      release: 'fake',
      bzImage: join(dir, 'bzImage'),
      systemMap: join(dir, 'System.map'),
      builtinDrivers: true,
    }),
  );
  await builtKernelEntry(dir).seal();
  t.same(await builtKernelEntry(dir).check(), { state: 'ok' }, 'the fake entry verifies');
  await flipByte(join(dir, 'bzImage'), 600);
  const v = await qcrash(['cache', 'verify']);
  t.equal(v.code, 1, 'cache verify exits 1');
  t.match(v.stdout, new RegExp(`^bad {2}kernels/${id} .*: bzImage changed since it was made`, 'm'));
  const r = await run(['--kernel', id]);
  t.equal(r.code, 3, 'the run exits 3');
  t.match(
    r.stderr,
    new RegExp(
      `built kernel ${id} in the cache is damaged \\(bzImage changed since it was made: its content digest differs\\): build it again with the same \`qcrash kernel build\` options, or remove it with \`qcrash cache clean --kernels\``,
    ),
  );
  t.same(qemuPids(tmp), [], 'no QEMU was started');
  t.same(await qcrashTempDirs(tmp), [], 'no temp dir left');
  const clean = await qcrash(['cache', 'clean', '--bad']);
  t.equal(clean.code, 0);
  t.match(clean.stdout, new RegExp(`^removed {2}kernels/${id} {2}\\(`, 'm'), 'cache clean --bad removes it');
  t.notOk(
    await stat(dir).then(
      () => true,
      () => false,
    ),
    'it is gone',
  );
});

t.test('cache clean needs to be told what to remove; --all empties the cache', async (t) => {
  const none = await qcrash(['cache', 'clean']);
  t.equal(none.code, 2, 'no flag: exit 2');
  t.match(none.stderr, /say what to remove: --all, --bad, --images/);
  const all = await qcrash(['cache', 'clean', '--all']);
  t.equal(all.code, 0);
  t.match(all.stdout, /^removed {2}images\/small-4k-[0-9a-f]+ {2}\(\d+\.\d MiB\)$/m);
  t.match(all.stdout, /^removed \d+ items from .*, freed \d+\.\d+ MiB$/m);
  const v = await qcrash(['cache', 'verify']);
  t.match(v.stdout, /0 entries in .*: 0 ok, 0 bad/);
});
