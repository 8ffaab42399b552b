import t from 'tap';
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';
import { referenceFiles, staleReferenceFiles } from '../../harness/cli/reference.ts';
import { parseScenarioText } from '../../harness/scenario/parse.ts';
import { parseRecipe } from '../../harness/image/recipe.ts';
import { projectRoot } from '../../harness/util/paths.ts';

// docs/reference/ and schemas/*.schema.json are generated from the code
// (npm run reference); the JSON Schemas are what editors check scenario and
// recipe files with, so they must say what the parser says.
const scenarioSchema = JSON.parse(await readFile(join(projectRoot, 'schemas/scenario.schema.json'), 'utf8')) as object;
const recipeSchema = JSON.parse(await readFile(join(projectRoot, 'schemas/recipe.schema.json'), 'utf8')) as object;
const ajv = new Ajv2020({ allErrors: true, strict: false });
const validScenario = ajv.compile(scenarioSchema);
const validRecipe = ajv.compile(recipeSchema);

t.test('the committed reference and schemas are what the code generates', async (t) => {
  t.same(await staleReferenceFiles(projectRoot), [], 'none stale (run npm run reference and commit)');
});

t.test('a stale copy is caught', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'reference-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const [file, text] of referenceFiles()) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await writeFile(join(dir, file), text);
  }
  t.same(await staleReferenceFiles(dir), [], 'a fresh copy is current');
  await writeFile(
    join(dir, 'docs/reference/cli.md'),
    `${await readFile(join(dir, 'docs/reference/cli.md'), 'utf8')}\n## qcrash gone\n`,
  );
  await rm(join(dir, 'schemas/recipe.schema.json'));
  t.same(
    await staleReferenceFiles(dir),
    ['docs/reference/cli.md', 'schemas/recipe.schema.json'],
    'an edited and a missing file are stale',
  );
});

async function yamlFiles(dir: string): Promise<string[]> {
  const entries = await readdir(join(projectRoot, dir), { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.yaml'))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

const shipped = {
  scenario: [...(await yamlFiles('scenarios'))],
  recipe: [...(await yamlFiles('vm-images/recipes')), ...(await yamlFiles('vm-images/bench'))],
};

for (const [kind, files] of Object.entries(shipped)) {
  t.test(`every shipped ${kind} file names its schema and passes it`, async (t) => {
    t.ok(files.length > 3, `${files.length} ${kind} files`);
    const schemaFile = join(projectRoot, 'schemas', `${kind}.schema.json`);
    const validate = kind === 'scenario' ? validScenario : validRecipe;
    for (const f of files) {
      const text = await readFile(f, 'utf8');
      const first = text.split('\n', 1)[0];
      t.equal(
        first,
        `# yaml-language-server: $schema=${relative(dirname(f), schemaFile)}`,
        `${relative(projectRoot, f)} names its schema`,
      );
      t.ok(validate(parseYaml(text)), `${relative(projectRoot, f)} passes: ${ajv.errorsText(validate.errors)}`);
    }
  });
}

// The same text to the parser and to the schema: both accept it, or both refuse it.
const scenarioExamples: Array<[string, string]> = [
  ['bare keywords', 'recipe: small-4k\nsteps: [mount, sync, umount]\nkill: [none]\n'],
  [
    'scalar and map arguments',
    'recipe: small-4k\nsteps:\n  - mount: [commit=1]\n  - migrate: /shapes\n  - migrate: { paths: [/shapes], recursive: true }\n  - sleep: 5\nkill:\n  - after: migrate\n  - kernel: { step: migrate, symbol: ext4_ext_migrate+0x10, hit: 2 }\n  - commits: { step: migrate, max: 3 }\n',
  ],
  [
    'write-log states',
    'recipe: small-4k\nsteps: [mount, sync]\ncrash-states: { from: log, prefixes: all, power-loss: { per-epoch: 4, seed: 1 }, budget: 40 }\n',
  ],
  ['power-loss none', 'recipe: small-4k\nsteps: [mount, sync]\ncrash-states: { from: log, power-loss: none }\n'],
  ['an unknown top-level key', 'recipe: small-4k\nsteps: [mount]\nkills: [none]\n'],
  ['an unknown step', 'recipe: small-4k\nsteps: [mount, snyc]\n'],
  ['a step with two keywords', 'recipe: small-4k\nsteps:\n  - { mount: [commit=1], sync: null }\n'],
  ['migrate with path, not paths', 'recipe: small-4k\nsteps:\n  - migrate: { path: /shapes }\n'],
  ['migrate without a path', 'recipe: small-4k\nsteps: [migrate]\n'],
  ['a relative migrate path', 'recipe: small-4k\nsteps:\n  - migrate: shapes/f\n'],
  ['a bad mount option', 'recipe: small-4k\nsteps:\n  - mount: ["commit=1; reboot"]\n'],
  ['no steps', 'recipe: small-4k\nsteps: []\n'],
  ['a negative repeat', 'recipe: small-4k\nsteps: [mount]\nrepeat: -1\n'],
  ['an unknown recovery', 'recipe: small-4k\nsteps: [mount]\nrecovery: [fsck]\n'],
  ['an unknown kill point', 'recipe: small-4k\nsteps: [mount]\nkill: [{ whenever: mount }]\n'],
  ['a kernel point with a bad symbol', 'recipe: small-4k\nsteps: [mount]\nkill: [{ kernel: { step: mount, symbol: "a b" } }]\n'],
  ['crash states not from a log', 'recipe: small-4k\nsteps: [mount]\ncrash-states: { from: disk }\n'],
  ['an unknown power-loss key', 'recipe: small-4k\nsteps: [mount]\ncrash-states: { from: log, power-loss: { per_epoch: 4 } }\n'],
];

t.test('the scenario schema and the parser agree', async (t) => {
  for (const [what, text] of scenarioExamples) {
    const parser = (() => {
      try {
        parseScenarioText('/x/example.yaml', text, { suite: 'default' });
        return true;
      } catch {
        return false;
      }
    })();
    const schema = validScenario(parseYaml(text));
    t.equal(schema, parser, `${what}: parser ${parser ? 'accepts' : 'refuses'}, schema ${schema ? 'accepts' : 'refuses'}`);
  }
  const verdicts = scenarioExamples.map(([, text]) => validScenario(parseYaml(text)));
  t.ok(verdicts.includes(true) && verdicts.includes(false), 'the examples hold both good and bad files');
});

const recipeOk =
  'filesystem: { block_size: 4096, style: modern, size_mb: 32 }\nentries:\n  - { kind: file, path: /f, blocks: ind-last }\n';
const recipeExamples: Array<[string, string]> = [
  ['a plain recipe', recipeOk],
  ['a layout', recipeOk.replace('blocks: ind-last }', 'blocks: 40, layout: { split: { blocks: 4 } } }')],
  ['an odd block size', recipeOk.replace('4096', '2048')],
  ['too small', recipeOk.replace('32', '4')],
  ['an unknown entry kind', recipeOk.replace('kind: file', 'kind: fifo')],
  ['a bad block count', recipeOk.replace('ind-last', 'ind-middle')],
  ['an unknown filesystem key', recipeOk.replace('size_mb: 32', 'size_mb: 32, journal: false')],
];

t.test('the recipe schema and the parser agree', async (t) => {
  for (const [what, text] of recipeExamples) {
    const parser = (() => {
      try {
        parseRecipe('/x/example.yaml', text);
        return true;
      } catch {
        return false;
      }
    })();
    const schema = validRecipe(parseYaml(text));
    t.equal(schema, parser, `${what}: parser ${parser ? 'accepts' : 'refuses'}, schema ${schema ? 'accepts' : 'refuses'}`);
  }
});
