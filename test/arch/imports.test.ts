import t from 'tap';
import { readdir, readFile } from 'node:fs/promises';
import { join, dirname, relative, resolve } from 'node:path';
import { projectRoot } from '../../harness/util/paths.ts';

// The pipeline's stages, lowest first. A module may import its own stage
// and any stage below it, never one above: the VM layer knows nothing of
// scenarios, reports know nothing of the runner, recoveries nothing of the
// oracles (and forbiddenPairs below keeps some lower stages out of reach
// too: the oracles know nothing of recoveries). Subfolders count as their own stage where listed (vm/qmp is
// above vm's channel base and below vm/machine), otherwise as their parent's.
const stages = [
  'util',
  'findings',
  'kernel',
  'image',
  'guest',
  'vm',
  'vm/qmp|vm/gdb|vm/agent',
  'vm/machine',
  'scenario',
  'crash',
  'recovery',
  'checks',
  'results',
  'report',
  'run',
  'compare',
  'validate',
  'bisect',
  'nightly',
  'bench',
  'doctor',
  'cli',
];
const harness = join(projectRoot, 'harness');

// Stage pairs kept apart although the ranking above would allow the import
// (the lower stage is not a dependency of the higher one, only ranked below
// it). A pair names folders under harness/, each with its subfolders. Pairs
// the ranking already forbids (vm -> scenario, report -> run, crash -> run,
// image (recipes) -> scenario) are not repeated.
export const forbiddenPairs: ReadonlyArray<{ from: string; to: string; why: string }> = [
  { from: 'vm', to: 'kernel', why: 'the machine layer boots a bzImage (vm/machine/boot-kernel.ts), it knows no kernel build' },
  {
    from: 'checks',
    to: 'recovery',
    why: 'the oracles read an image and its logs (checks/oracle.ts ImageUnderCheck), not the recovery',
  },
  {
    from: 'scenario',
    to: 'image',
    why: 'a scenario file parses to the model on its own; run/resolve-scenario.ts finds its recipe or image',
  },
];

function within(rel: string, folder: string): boolean {
  return rel.startsWith(`${folder}/`);
}

/** Every import of `graph` (absolute paths under `root`) that crosses one of `pairs`. */
export function forbiddenCrossings(
  graph: ReadonlyMap<string, readonly string[]>,
  root: string,
  pairs = forbiddenPairs,
): string[] {
  const found: string[] = [];
  for (const [f, deps] of graph) {
    const from = relative(root, f);
    for (const d of deps) {
      const to = relative(root, d);
      for (const p of pairs)
        if (within(from, p.from) && within(to, p.to)) found.push(`${from} -> ${to} (${p.from} -> ${p.to}: ${p.why})`);
    }
  }
  return found;
}

function stageOf(file: string): { name: string; rank: number } {
  const rel = relative(harness, file).split('/');
  for (const depth of [2, 1]) {
    const key = rel.slice(0, depth).join('/');
    const rank = stages.findIndex((s) => s.split('|').includes(key));
    if (rank >= 0 && rel.length > depth) return { name: key, rank };
  }
  throw new Error(`${relative(projectRoot, file)} is in no stage: add its folder to the list in test/arch/imports.test.ts`);
}

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Static imports, re-exports and dynamic import() of relative paths. */
export function importsOf(text: string): string[] {
  const specs: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/gm)) specs.push(m[1]!);
  for (const m of text.matchAll(/^\s*import\s+['"](\.[^'"]+)['"]/gm)) specs.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g)) specs.push(m[1]!);
  return specs;
}

const files = await sources(harness);
const graph = new Map<string, string[]>();
for (const f of files)
  graph.set(
    f,
    importsOf(await readFile(f, 'utf8')).map((s) => resolve(dirname(f), s)),
  );

t.test('the import scanner sees every kind of import', async (t) => {
  t.same(
    importsOf(
      `import { a } from './a.ts';\nimport type { B } from '../b.ts';\nexport { c } from './c.ts';\nimport './d.ts';\nconst e = await import('./e.ts');\nimport x from 'node:fs';`,
    ),
    ['./a.ts', '../b.ts', './c.ts', './d.ts', './e.ts'],
  );
});

t.test('every import resolves to a file of the tree', async (t) => {
  const missing = [...graph].flatMap(([f, deps]) =>
    deps.filter((d) => !graph.has(d)).map((d) => `${relative(harness, f)} -> ${relative(harness, d)}`),
  );
  t.same(missing, []);
});

t.test('no import goes from a lower stage to a higher one', async (t) => {
  const upward: string[] = [];
  for (const [f, deps] of graph) {
    const from = stageOf(f);
    for (const d of deps) {
      const to = stageOf(d);
      if (to.rank > from.rank) upward.push(`${relative(harness, f)} (${from.name}) -> ${relative(harness, d)} (${to.name})`);
    }
  }
  t.same(upward, [], 'upward imports');
  t.ok(graph.size > 80, `${graph.size} modules checked`);
});

t.test('no import crosses a forbidden stage pair', async (t) => {
  t.same(forbiddenCrossings(graph, harness), [], 'forbidden imports');
  for (const p of forbiddenPairs) {
    t.ok(
      files.some((f) => within(relative(harness, f), p.from)),
      `${p.from} exists`,
    );
    t.ok(
      files.some((f) => within(relative(harness, f), p.to)),
      `${p.to} exists`,
    );
  }
});

t.test('the module graph has no cycle', async (t) => {
  const state = new Map<string, 'active' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'active') {
      cycles.push([...path.slice(path.indexOf(f)), f].map((x) => relative(harness, x)).join(' -> '));
      return;
    }
    state.set(f, 'active');
    for (const d of graph.get(f) ?? []) visit(d, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of graph.keys()) visit(f, []);
  t.same(cycles, []);
});

t.test('the check itself catches an upward import and a cycle', async (t) => {
  t.ok(
    stageOf(join(harness, 'vm/machine/vm.ts')).rank < stageOf(join(harness, 'scenario/model.ts')).rank,
    'vm is below scenario',
  );
  t.ok(stageOf(join(harness, 'report/tap.ts')).rank < stageOf(join(harness, 'run/runner.ts')).rank, 'report is below run');
  t.throws(() => stageOf(join(harness, 'nowhere/x.ts')), /in no stage/);
});

t.test('the check itself catches a forbidden pair the ranking allows', async (t) => {
  const h = (p: string) => join(harness, p);
  const synthetic = new Map([
    [h('vm/machine/argv.ts'), [h('kernel/kernel.ts'), h('vm/machine/boot-kernel.ts')]],
    [h('checks/oracle.ts'), [h('recovery/recovery.ts'), h('image/e2fsck.ts')]],
    [h('guest/initramfs.ts'), [h('kernel/kernel.ts')]],
    [h('run/case-runner.ts'), [h('recovery/e2fsck.ts'), h('checks/oracle.ts')]],
    [h('scenario/parse.ts'), [h('image/recipe.ts'), h('util/yaml-source.ts')]],
    [h('run/resolve-scenario.ts'), [h('image/user-image.ts'), h('scenario/parse.ts')]],
  ]);
  for (const [f, deps] of synthetic)
    for (const d of deps)
      t.ok(stageOf(d).rank <= stageOf(f).rank, `the ranking alone allows ${relative(harness, f)} -> ${relative(harness, d)}`);
  t.same(
    forbiddenCrossings(synthetic, harness).map((c) => c.split(' (')[0]),
    [
      'vm/machine/argv.ts -> kernel/kernel.ts',
      'checks/oracle.ts -> recovery/recovery.ts',
      'scenario/parse.ts -> image/recipe.ts',
    ],
    'only the three crossings are flagged: guest -> kernel, run -> recovery and run -> image stay allowed',
  );
  t.same(
    forbiddenCrossings(new Map([[h('vmx/a.ts'), [h('kernelx/b.ts')]]]), harness),
    [],
    'a folder whose name only starts like a pair is not in it',
  );
});
