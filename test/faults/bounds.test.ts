import t, { type Test } from 'tap';
import { mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qcrash } from '../helpers/cli.ts';
import { parseScenarioText } from '../../harness/scenario/parse.ts';
import { defaultMaxCases } from '../../harness/scenario/limits.ts';

// Unbounded inputs and confusing messages of issue 27: each is exit 2 at its
// file:line, at once, before anything is built or booted.
const dir = await mkdtemp(join(tmpdir(), 'faults-bounds-'));
const tmp = join(dir, 'tmp');
await mkdir(tmp);
t.teardown(() => rm(dir, { recursive: true, force: true }));
const run = (...args: string[]) => qcrash(['run', ...args], { env: { QCRASH_TMPDIR: tmp }, timeoutMs: 60_000 });

async function scenario(name: string, text: string): Promise<string> {
  const f = join(dir, name);
  await writeFile(f, text);
  return f;
}
const head = 'recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n  - mount: [commit=1]\n  - migrate: /shapes/direct-12\n  - sync\n';

async function refusedFast(t: Test, file: string, line: number, message: RegExp, ...args: string[]) {
  const started = performance.now();
  const r = await run(file, '--out', join(dir, 'out-never'), ...args);
  t.equal(r.code, 2, r.stderr);
  t.match(r.stderr, new RegExp(`${file.replace(/[.]/g, '\\.')}:${line}: `));
  t.match(r.stderr, message);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.ok(performance.now() - started < 30_000, 'answered at once');
  t.same(
    (await readdir(tmp)).filter((f) => f.startsWith('qcrash-')),
    [],
    'nothing built',
  );
}

t.test('commits: { max: 100000000 } is refused at its line, without filling the heap', async (t) => {
  const f = await scenario('huge.yaml', `${head}kill:\n  - commits:\n      step: sync\n      max: 100000000\n`);
  await refusedFast(t, f, 10, new RegExp(`at least 100000000 cases .*the limit is ${defaultMaxCases} per scenario.*--max-cases`));
});

t.test('commits: { max: 1000000 } is not silently a million cases', async (t) => {
  const f = await scenario('million.yaml', `${head}kill:\n  - commits: { step: sync, max: 1000000 }\n`);
  await refusedFast(t, f, 8, /at least 1000000 cases/);
});

t.test('kernel-hits: { first: 30000000 } answers at once, with or without sample', async (t) => {
  const f = await scenario(
    'hits.yaml',
    `${head}kill:\n  - kernel-hits: { step: migrate, symbol: ext4_ext_migrate, first: 30000000 }\n`,
  );
  await refusedFast(t, f, 8, /at least 30000000 cases/);
  const s = await scenario(
    'hits-sample.yaml',
    `${head}kill:\n  - kernel-hits: { step: migrate, symbol: ext4_ext_migrate, first: 30000000, sample: 4 }\n`,
  );
  await refusedFast(t, s, 8, /with sample, first is at most 100000/);
});

t.test('repeat multiplies, and crash-state budgets count', async (t) => {
  const f = await scenario('rep.yaml', `${head}repeat: 1000\nkill:\n  - commits: { step: sync, max: 30 }\n`);
  await refusedFast(t, f, 9, /at least 30000 cases \(here 30 points from commits's max x repeat 1000\)/);
  const b = await scenario('budget.yaml', `${head}repeat: 2\ncrash-states: { from: log, budget: 20000 }\n`);
  await refusedFast(t, b, 8, /at least 40000 cases \(here a write-log budget of 20000 states x repeat 2\)/);
});

t.test('--max-cases sets the limit', async (t) => {
  const f = await scenario('twelve.yaml', `${head}kill:\n  - commits: { step: sync, max: 12 }\n`);
  await refusedFast(t, f, 8, /the limit is 5 per scenario/, '--max-cases', '5');
  const bad = await run(f, '--max-cases', 'lots');
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--max-cases must be a whole number/);
  // Raised, a large generator is made (and quickly).
  const text = `${head}kill:\n  - commits: { step: sync, max: 100000 }\n`;
  t.equal(parseScenarioText(join(dir, 'big.yaml'), text, { maxCases: 100_000 }).scenario.crashPoints.length, 100_000);
  t.throws(() => parseScenarioText(join(dir, 'big.yaml'), text, { maxCases: 99_999 }), /big\.yaml:8: .*the limit is 99999/);
});

t.test('a YAML alias bomb is exit 2 at its line, not 3 with a stack trace', async (t) => {
  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
  for (const [i, n] of ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].entries()) {
    const prev = String.fromCharCode('a'.charCodeAt(0) + i);
    bomb.push(`${n}: &${n} [${Array(9).fill(`*${prev}`).join(',')}]`);
  }
  const f = await scenario('bomb.yaml', `${bomb.join('\n')}\n${head}kill:\n  - after: sync\n`);
  await refusedFast(t, f, 2, /YAML aliases expand too far/);
});

t.test("a recipe whose files cannot fit its filesystem is exit 2 at the recipe's size_mb, in a sentence", async (t) => {
  const recipe = join(dir, 'toobig-recipe.yaml');
  await writeFile(
    recipe,
    'description: too small\nfilesystem: { block_size: 4096, style: ext3, size_mb: 8 }\nentries:\n  - { kind: file, path: /big, blocks: 4000 }\n',
  );
  const f = await scenario(
    'toobig.yaml',
    `recipe: ${recipe}\nrecovery: [e2fsck]\nsteps:\n  - mount\n  - migrate: /big\nkill:\n  - after: migrate\n`,
  );
  const r = await run(f, '--out', join(dir, 'out-toobig'));
  t.equal(r.code, 2, r.stderr);
  t.match(r.stderr, `${recipe}:2: the recipe's files (15.6 MiB of file data`);
  t.match(r.stderr, /do not fit its 8 MiB filesystem .*raise filesystem\.size_mb/);
  t.notMatch(r.stderr, /__populate_fs|mkfs\.ext4 -F/, "not mkfs's words");
});

t.test('migrate: { path: ... } says that path is not a key, and names paths', async (t) => {
  const f = await scenario(
    'path-key.yaml',
    head.replace('  - migrate: /shapes/direct-12\n', '  - migrate: { path: /shapes/direct-12 }\n') + 'kill:\n  - after: sync\n',
  );
  await refusedFast(t, f, 5, /unknown key "path"; allowed here: .*paths.*Did you mean: paths\?/);
});

t.test('a folder and a file inside it are one scenario, not "two scenarios have the id"', async (t) => {
  const folder = join(dir, 'suite');
  await mkdir(folder);
  const f = join(folder, 'one.yaml');
  await writeFile(f, `${head}kill:\n  - after: sync\n`);
  const r = await run(folder, f, '--filter', 'NOMATCH', '--out', join(dir, 'out-dedup'));
  t.notMatch(r.stderr, /two scenarios have the id/);
  t.match(r.stderr, /matched none of the 1 case\(s\)/, 'the scenario counted once');
});
