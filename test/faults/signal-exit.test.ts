import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../../harness/util/paths.ts';
import { qcrashBin, qemuPids } from '../helpers/env.ts';

// A signal ends qcrash with 128 + its number (SIGINT 130, SIGTERM 143,
// SIGHUP 129) in every phase: also when what the teardown killed (QEMU
// saving the agent-ready state) fails first and takes the command's error
// path, which used to exit 3 with "QEMU killed by SIGKILL" as the cause.
const dir = await mkdtemp(join(tmpdir(), 'faults-signal-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

interface Exit {
  code: number | null;
  stderr: string;
}

function spawnNode(
  args: string[],
  env: Record<string, string>,
  onStart: (child: ReturnType<typeof spawn>, stderr: () => string) => void,
): Promise<Exit> {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.on('data', () => {});
  onStart(child, () => stderr);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr })));
}

/**
 * A script on the real cleanup module: a cleanup kills a child the main
 * flow waits for, then takes `cleanupMs` (as removing VM files does) and
 * runs `cleanupEnd`; the main flow, woken by that death, runs `ending`
 * (what the command does on its error path). Prints "ready" once set up.
 */
async function raceScript(name: string, o: { cleanupMs: number; cleanupEnd?: string; ending: string }): Promise<string> {
  const tsx = import.meta.resolve('tsx/esm/api');
  const script = join(dir, `${name}.mjs`);
  await writeFile(
    script,
    `import { register } from ${JSON.stringify(tsx)};
register();
const { onCleanup, runAllCleanups, causeOf } = await import(${JSON.stringify(pathToFileURL(join(projectRoot, 'harness/util/cleanup.ts')).href)});
const { InfraError } = await import(${JSON.stringify(pathToFileURL(join(projectRoot, 'harness/util/errors.ts')).href)});
const { writeFileSync } = await import('node:fs');
const { spawn } = await import('node:child_process');
const qemu = spawn('sleep', ['60'], { stdio: 'ignore' });
const died = new Promise((r) => qemu.on('exit', r));
onCleanup(async () => {
  qemu.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, ${o.cleanupMs}));
  ${o.cleanupEnd ?? ''}
});
process.stdout.write('ready\\n');
await died;
${o.ending}
`,
  );
  return script;
}

/** `signal` to a race script once it is ready. */
function interrupt(script: string, signal: NodeJS.Signals): Promise<Exit> {
  return spawnNode([script], {}, (child) => child.stdout!.once('data', () => child.kill(signal)));
}

/**
 * The main flow fails on the death the teardown caused first and exits with
 * its error's code, as the CLI does. `raw`: a command that does not ask
 * causeOf, and exits 3 with QEMU's death as its error.
 */
async function teardownRace(signal: NodeJS.Signals, raw = false): Promise<Exit> {
  const script = await raceScript(`race-${signal}`, {
    cleanupMs: 3000,
    ending: `const e = ${raw ? '' : 'causeOf'}(new InfraError('QEMU killed by SIGKILL'));
process.stderr.write('qcrash: ' + e.message + '\\n');
process.exit(e.exitCode);`,
  });
  return interrupt(script, signal);
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const) {
  t.test(`${signal} whose teardown breaks the main flow first: exit ${code}, the signal named as the cause`, async (t) => {
    const r = await teardownRace(signal);
    t.equal(r.code, code);
    t.match(r.stderr, `qcrash: stopped by ${signal}`);
    t.notMatch(r.stderr, /QEMU killed by SIGKILL/);
  });
}

t.test("a command that exits 3 on what the teardown broke still exits with the signal's code", async (t) => {
  const r = await teardownRace('SIGTERM', true);
  t.match(r.stderr, 'qcrash: QEMU killed by SIGKILL', 'its error path ran first');
  t.equal(r.code, 143);
});

t.test("the command's own teardown waits for the signal's: nothing is left half removed at exit", async (t) => {
  // main.ts ends every command with runAllCleanups() and bin/qcrash.js then
  // calls process.exit. After a Ctrl-C the signal's teardown has taken
  // every cleanup already; the command's call must wait for them, not find
  // none and exit while a VM's folder is still being removed (what
  // test/faults/run.test.ts's Ctrl-C case once saw: a qcrash-vm-* dir left).
  const done = join(dir, 'cleanup-finished');
  const script = await raceScript('join-teardown', {
    cleanupMs: 1500,
    cleanupEnd: `writeFileSync(${JSON.stringify(done)}, 'removed');`,
    ending: `let code;
try {
  throw causeOf(new InfraError('QEMU killed by SIGKILL'));
} catch (e) {
  code = e.exitCode;
} finally {
  await runAllCleanups();
}
process.exit(code);`,
  });
  const r = await interrupt(script, 'SIGINT');
  t.equal(r.code, 130, r.stderr);
  t.equal(
    await stat(done).then(
      () => true,
      () => false,
    ),
    true,
    'the cleanup the signal started had finished before the process exited',
  );
});

t.test('Ctrl-C while a real run saves the agent-ready state: exit 130, not 3', async (t) => {
  // An empty cache: the run builds its image, boots the guest and saves its state before any case.
  const cache = join(dir, 'cache');
  const tmp = join(dir, 'tmp');
  await mkdir(tmp, { recursive: true });
  const scenario = join(dir, 'one.yaml');
  await writeFile(scenario, 'recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n  - mount\n  - sync\nkill:\n  - after: sync\n');
  const snapshots = join(cache, 'snapshots');
  let seen = '';
  const r = await spawnNode(
    [qcrashBin, 'run', scenario, '--out', join(dir, 'out'), '--format', 'none'],
    { QCRASH_CACHE: cache, QCRASH_TMPDIR: tmp },
    (child) => {
      const poll = async () => {
        for (let i = 0; i < 60_000 && child.exitCode === null; i++) {
          const p = (await readdir(snapshots).catch(() => [] as string[])).find((n) => n.endsWith('.partial'));
          if (p && ((await stat(join(snapshots, p)).catch(() => undefined))?.size ?? 0) > 0) {
            seen = p;
            child.kill('SIGINT');
            return;
          }
          await new Promise((res) => setTimeout(res, 5));
        }
      };
      void poll();
    },
  );
  t.ok(seen, `interrupted while the state was written (${seen})`);
  t.equal(r.code, 130, r.stderr.slice(-600));
  t.match(r.stderr, /SIGINT received, stopping VMs/);
  t.notMatch(r.stderr, /killed by SIGKILL/, "the teardown's kill of QEMU is not reported as the cause");
  t.same(qemuPids(tmp), [], 'no QEMU left');
});
