import t from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { projectRoot } from '../../harness/util/paths.ts';

// npm test runs npm run lint first (the format check, typescript-eslint and
// knip), so a badly formatted or lint-failing file fails the test command.
// The whole lint runs there; here, that each check really fails on a bad file.
const pkg = JSON.parse(await readFile(join(projectRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
const bin = (name: string) => join(projectRoot, 'node_modules', '.bin', name);
const dir = await mkdtemp(join(tmpdir(), 'lint-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

t.test('npm test runs the lint first, and the lint is the three checks', async (t) => {
  t.match(pkg.scripts.test, /^npm run lint && /);
  t.equal(pkg.scripts.lint, 'prettier --check . && eslint . && knip');
});

t.test('the format check fails on a badly formatted file and passes once it is formatted', async (t) => {
  const bad = join(dir, 'bad.ts');
  await writeFile(bad, 'export   function f( a:number ){return a+1}\n');
  const prettier = (file: string) =>
    execa(bin('prettier'), ['--config', join(projectRoot, '.prettierrc.json'), '--check', file], { reject: false });
  const before = await prettier(bad);
  t.equal(before.exitCode, 1, 'prettier --check refuses it');
  t.match(before.stderr, /bad\.ts/);
  await execa(bin('prettier'), ['--config', join(projectRoot, '.prettierrc.json'), '--write', bad]);
  t.equal((await prettier(bad)).exitCode, 0, 'and accepts it formatted');
});

t.test('typescript-eslint fails on a promise nobody awaits in the harness', async (t) => {
  // Linted as if it were harness/ source (the project's type information, its rules).
  const text =
    'export async function later(): Promise<number> {\n  return 1;\n}\n\nexport function start(): void {\n  later();\n}\n';
  const r = await execa(bin('eslint'), ['--stdin', '--stdin-filename', join(projectRoot, 'harness/util/version.ts')], {
    input: text,
    cwd: projectRoot,
    reject: false,
  });
  t.equal(r.exitCode, 1);
  t.match(r.stdout, /no-floating-promises/);
});
