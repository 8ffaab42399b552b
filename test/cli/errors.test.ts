import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
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
  const r = await runScenario(
    'delay.yaml',
    'recipe: small-4k\nsteps:\n  - migrate: /shapes/direct-12\nkill:\n  - delay: { step: migrate, ms: -10 }\n',
  );
  t.equal(r.code, 2);
  t.match(r.stderr, /delay\.yaml:5: .*>=0/);
});

t.test('unknown kernel symbol: exit 2 with suggestions', async (t) => {
  const r = await runScenario(
    'sym.yaml',
    'recipe: small-4k\nsteps:\n  - mount\n  - migrate: /shapes/direct-12\nkill:\n  - kernel: { step: migrate, symbol: ext4_migrate }\n',
  );
  t.equal(r.code, 2);
  t.match(r.stderr, /sym\.yaml:6: unknown kernel symbol "ext4_migrate"/, 'with the line of its kill point');
  t.match(r.stderr, /Close matches: .*ext4_ext_migrate/);
});

t.test('an inlined static function is refused the same way', async (t) => {
  const r = await runScenario(
    'inlined.yaml',
    'recipe: small-4k\nsteps:\n  - migrate: /shapes/direct-12\nkill:\n  - kernel: { step: migrate, symbol: ext4_ext_swap_inode_data }\n',
  );
  t.equal(r.code, 2);
  t.match(r.stderr, /unknown kernel symbol "ext4_ext_swap_inode_data".*inlined/);
});

t.test('unknown option and bad --jobs are usage errors', async (t) => {
  t.equal((await qcrash(['run', '--frobnicate'])).code, 2);
  const j = await qcrash(['run', '--jobs', 'many']);
  t.equal(j.code, 2);
  t.match(j.stderr, /--jobs must be a whole number/);
});

t.test('bisect: bad trees and revisions are exit 2 with what is wrong', async (t) => {
  const repo = join(dir, 'history');
  const git = (args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(
        'git',
        args,
        {
          cwd: repo,
          env: {
            ...process.env,
            GIT_AUTHOR_NAME: 'a',
            GIT_AUTHOR_EMAIL: 'a@b',
            GIT_COMMITTER_NAME: 'a',
            GIT_COMMITTER_EMAIL: 'a@b',
          },
        },
        (e, out) => (e ? reject(e) : resolve(out.trim())),
      ),
    );
  await mkdir(repo);
  await git(['init', '-q']);
  await git(['commit', '-q', '--allow-empty', '-m', 'one']);
  const one = await git(['rev-parse', 'HEAD']);
  await git(['commit', '-q', '--allow-empty', '-m', 'two']);
  const scenario = join(dir, 'bisect.yaml');
  await writeFile(scenario, 'recipe: small-4k\nsteps:\n  - migrate: /shapes/direct-12\nkill:\n  - none\n');
  const bisect = (args: string[]) => qcrash(['bisect', ...args, scenario]);

  const notGit = await bisect(['--tree', dir, '--good', 'HEAD~1', '--bad', 'HEAD']);
  t.equal(notGit.code, 2);
  t.match(notGit.stderr, /--tree .* is not a git tree/);
  const unknown = await bisect(['--tree', repo, '--good', 'v0.0-nope', '--bad', 'HEAD']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown revision "v0\.0-nope"/);
  const reversed = await bisect(['--tree', repo, '--good', 'HEAD', '--bad', one]);
  t.equal(reversed.code, 2);
  t.match(reversed.stderr, /--good HEAD is not an ancestor of --bad/);
  t.equal(await git(['log', '-1', '--format=%s']), 'two', "the user's tree is left as it was");
});
