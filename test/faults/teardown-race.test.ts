import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../../harness/util/paths.ts';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { qemuPids } from '../helpers/env.ts';

// A Ctrl-C that lands while a temp dir or a VM is being made. CI once saw
// the Ctrl-C fault test (test/faults/run.test.ts) leave an empty
// qcrash-vm-* dir: the signal came between mkdtemp and the dir's cleanup
// being registered, and the teardown, with nothing else to wait for,
// exited first. Here the script signals itself the moment the dir shows
// up in a watched folder. Before the fix that left a dir in about half the
// tries (2 and 1 of 3 here, and 5 of 5 VM launches in a scratch loop), so
// each case tries five times.
const dir = await mkdtemp(join(tmpdir(), 'faults-teardown-race-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

const modules = {
  tsx: import.meta.resolve('tsx/esm/api'),
  tempdir: pathToFileURL(join(projectRoot, 'harness/util/tempdir.ts')).href,
  vm: pathToFileURL(join(projectRoot, 'harness/vm/machine/vm.ts')).href,
  cleanup: pathToFileURL(join(projectRoot, 'harness/util/cleanup.ts')).href,
  outLock: pathToFileURL(join(projectRoot, 'harness/run/out-lock.ts')).href,
};

/**
 * A script that makes `what` and sends itself SIGINT as soon as an entry
 * `appears` (a JS test of \`name\`; default a qcrash-* dir) in the folder
 * `watched` (a JS expression; default QCRASH_TMPDIR).
 */
async function raceScript(name: string, what: string, opts: { watched?: string; appears?: string } = {}): Promise<string> {
  const script = join(dir, `${name}.mjs`);
  await writeFile(
    script,
    `import { register } from ${JSON.stringify(modules.tsx)};
import { watch } from 'node:fs';
register();
const { TempDir } = await import(${JSON.stringify(modules.tempdir)});
const { Vm } = await import(${JSON.stringify(modules.vm)});
const { onCleanup } = await import(${JSON.stringify(modules.cleanup)});
const { OutDirLock } = await import(${JSON.stringify(modules.outLock)});
// The handlers are installed with the first cleanup; a run has its out lock's by then.
onCleanup(() => {});
const w = watch(${opts.watched ?? 'process.env.QCRASH_TMPDIR'}, (_event, name) => {
  if (!(${opts.appears ?? "String(name).startsWith('qcrash-')"})) return;
  w.close();
  process.kill(process.pid, 'SIGINT');
});
try {
  await ${what};
} catch {
  /* the teardown's doing */
}
// The signal's teardown ends the process (exit 130); this only keeps it alive until then.
await new Promise((r) => setTimeout(r, 20_000));
process.exit(0);
`,
  );
  return script;
}

async function interrupted(script: string, tmp: string, args: string[] = []): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, QCRASH_TMPDIR: tmp },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => child.on('close', r));
  return { code, stderr };
}

async function leftIn(tmp: string): Promise<string[]> {
  return (await readdir(tmp)).filter((f) => f.startsWith('qcrash-'));
}

t.test('Ctrl-C while a temp dir is being made: the teardown waits for it and removes it', async (t) => {
  const script = await raceScript('tempdir', "TempDir.create('race')");
  for (let i = 0; i < 5; i++) {
    const tmp = join(dir, `tmp-${i}`);
    await mkdir(tmp);
    const r = await interrupted(script, tmp);
    t.equal(r.code, 130, r.stderr);
    t.match(r.stderr, /SIGINT received/);
    t.same(await leftIn(tmp), [], `try ${i + 1}: no temp dir left`);
  }
});

t.test('Ctrl-C while a VM is being launched: no QEMU started into a dir being removed, nothing left', async (t) => {
  const kernel = await stockKernel();
  const initrd = (await buildInitramfs(kernel)).path;
  const disk = join(dir, 'empty.img');
  await writeFile(disk, Buffer.alloc(1 << 20));
  const spec = { kernel, initrd, disk: { path: disk, format: 'raw' }, waitAgent: false };
  const script = await raceScript('vm', `Vm.launch(${JSON.stringify(spec)})`);
  for (let i = 0; i < 5; i++) {
    const tmp = join(dir, `vm-tmp-${i}`);
    await mkdir(tmp);
    const r = await interrupted(script, tmp);
    t.equal(r.code, 130, r.stderr);
    t.same(await leftIn(tmp), [], `try ${i + 1}: no temp dir left`);
    t.same(qemuPids(tmp), [], `try ${i + 1}: no QEMU left`);
  }
});

t.test('a process that exits without removing its temp dirs leaves none (the exit hook)', async (t) => {
  // process.exit() right after making dirs, with a file in one and a removal
  // still running in another: what a script using the library may do, and
  // what the teardown's hard deadline does after a signal.
  const script = join(dir, 'exit-now.mjs');
  await writeFile(
    script,
    `import { register } from ${JSON.stringify(modules.tsx)};
import { writeFileSync } from 'node:fs';
register();
const { TempDir } = await import(${JSON.stringify(modules.tempdir)});
const a = await TempDir.create('exit-a');
writeFileSync(a.join('file'), 'x');
const b = await TempDir.create('exit-b');
void b.remove();
process.exit(0);
`,
  );
  const tmp = join(dir, 'exit-tmp');
  await mkdir(tmp);
  const r = await interrupted(script, tmp);
  t.equal(r.code, 0, r.stderr);
  t.same(await leftIn(tmp), [], 'no temp dir left');
});

t.test("Ctrl-C while the results folder's lock is being taken: the lock does not stay behind", async (t) => {
  // A lock left by a run that never started makes the next run in that folder refuse (a stale lock).
  const script = await raceScript('lock', 'OutDirLock.acquire(process.argv[2], { resume: false })', {
    watched: 'process.argv[2]',
    appears: "String(name) === '.qcrash-lock'",
  });
  for (let i = 0; i < 5; i++) {
    const out = join(dir, `out-${i}`);
    await mkdir(out);
    const r = await interrupted(script, dir, [out]);
    t.equal(r.code, 130, r.stderr);
    t.same(await readdir(out), [], `try ${i + 1}: no lock left`);
  }
});
