import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qcrashBin } from '../helpers/env.ts';

// The CLI as a user runs it: bad input ends with exit 2 and a message that
// names the file and line, or the unknown thing with close matches.
const dir = await mkdtemp(join(tmpdir(), 'cli-errors-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

function qcrash(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [qcrashBin, ...args], { env: { ...process.env, QCRASH_TMPDIR: dir } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

async function runScenario(name: string, text: string) {
  const f = join(dir, name);
  await writeFile(f, text);
  return { f, ...(await qcrash(['run', f])) };
}

t.test('YAML syntax error: file and line, exit 2', async (t) => {
  const r = await runScenario('syntax.yaml', 'recipe: small-4k\nsteps:\n  - mount\n  - migrate: [/f\nkill:\n  - none\n');
  t.equal(r.code, 2);
  t.match(r.stderr, /syntax\.yaml:\d+(:\d+)?: YAML syntax error/);
});

t.test('unknown recipe: line and close matches', async (t) => {
  const r = await runScenario('recipe.yaml', 'recipe: shapes4k\nsteps:\n  - sync\nkill:\n  - none\n');
  t.equal(r.code, 2);
  t.match(r.stderr, /recipe\.yaml:1: unknown recipe "shapes4k".*Did you mean: .*shapes-4k/);
});

t.test('unknown step: line and close matches', async (t) => {
  const r = await runScenario('step.yaml', 'recipe: small-4k\nsteps:\n  - mount\n  - chattr: /shapes\nkill:\n  - none\n');
  t.equal(r.code, 2);
  t.match(r.stderr, /step\.yaml:4: unknown step "chattr"/);
});

t.test('negative delay: line', async (t) => {
  const r = await runScenario('delay.yaml', 'recipe: small-4k\nsteps:\n  - migrate: /shapes/direct-12\nkill:\n  - delay: { step: migrate, ms: -10 }\n');
  t.equal(r.code, 2);
  t.match(r.stderr, /delay\.yaml:5: .*>=0/);
});

t.test('unknown kernel symbol: exit 2 with suggestions', async (t) => {
  const r = await runScenario('sym.yaml', 'recipe: small-4k\nsteps:\n  - mount\n  - migrate: /shapes/direct-12\nkill:\n  - kernel: { step: migrate, symbol: ext4_migrate }\n');
  t.equal(r.code, 2);
  t.match(r.stderr, /unknown kernel symbol "ext4_migrate"/);
  t.match(r.stderr, /Close matches: .*ext4_ext_migrate/);
});

t.test('an inlined static function is refused the same way', async (t) => {
  const r = await runScenario('inlined.yaml', 'recipe: small-4k\nsteps:\n  - migrate: /shapes/direct-12\nkill:\n  - kernel: { step: migrate, symbol: ext4_ext_swap_inode_data }\n');
  t.equal(r.code, 2);
  t.match(r.stderr, /unknown kernel symbol "ext4_ext_swap_inode_data".*inlined/);
});

t.test('unknown option and bad --jobs are usage errors', async (t) => {
  t.equal((await qcrash(['run', '--frobnicate'])).code, 2);
  const j = await qcrash(['run', '--jobs', 'many']);
  t.equal(j.code, 2);
  t.match(j.stderr, /--jobs must be a whole number/);
});
