import { readFile, stat, readdir } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { z } from 'zod';
import { ConfigError } from '../util/errors.ts';
import { closeMatches, didYouMean } from '../util/suggest.ts';
import { sha256 } from '../util/hash.ts';
import { recipesDir } from '../util/paths.ts';
import { defaultAllowance } from '../findings/finding.ts';
import type { CrashPoint, RecoveryMode, Scenario, Step, WriterMode } from './model.ts';
import { YamlSource } from './yaml-source.ts';
import {
  pointArgs,
  pointScalarKey,
  scenarioTop,
  stepArgs,
  stepScalarKey,
  type PointArgKind,
  type StepArgKind,
} from './schema.ts';

type Path = Array<string | number>;

/** Read and validate one scenario file; every error names file:line. */
export async function loadScenario(file: string, opts: { suite?: string } = {}): Promise<Scenario> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read scenario file: ${(e as Error).message}`, { file });
  }
  return parseScenario(file, text, opts);
}

export async function parseScenario(file: string, text: string, opts: { suite?: string } = {}): Promise<Scenario> {
  const src = YamlSource.parse(file, text);
  const raw = src.value();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw src.error([], 'a scenario file is a YAML map with at least "recipe", "steps" and "kill"');
  }
  const top = check(src, [], scenarioTop, raw);

  // A recipe is a name from vm-images/recipes/ or a path (relative to the scenario file) to a recipe of one's own.
  let recipe = top.recipe;
  if (recipe.includes('/') || recipe.endsWith('.yaml')) {
    recipe = resolve(dirname(file), recipe);
    if (!(await stat(recipe).then((s) => s.isFile(), () => false))) throw src.error(['recipe'], `recipe file ${top.recipe} not found (looked for ${recipe})`);
  } else {
    const recipes = await listRecipeNames();
    if (!recipes.includes(top.recipe)) {
      throw src.error(['recipe'], `unknown recipe "${top.recipe}" (recipes live in vm-images/recipes/, or give a path ending in .yaml).${didYouMean(top.recipe, recipes)}`);
    }
  }

  const name = top.name ?? basename(file, extname(file));
  const steps = parseSteps(src, top.steps, name);
  const crashPoints = top.kill.flatMap((item, i) => parsePoint(src, ['kill', i], item, steps));
  const recovery: RecoveryMode[] = top.recovery === undefined ? ['e2fsck', 'kernel'] : Array.isArray(top.recovery) ? top.recovery : [top.recovery];

  return {
    name,
    file,
    hash: sha256(text),
    ...(top.description !== undefined ? { description: top.description } : {}),
    recipe,
    steps,
    crashPoints,
    repeat: top.repeat ?? 1,
    recovery: [...new Set(recovery)],
    allow: {
      classes: top.allow?.classes ?? defaultAllowance.classes,
      codes: top.allow?.codes ?? defaultAllowance.codes,
    },
    suite: top.suite ?? opts.suite ?? 'default',
  };
}

function check<S extends z.ZodType>(src: YamlSource, at: Path, schema: S, value: unknown): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = [...at, ...(issue.path as Path)];
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    const known = 'shape' in schema ? Object.keys((schema as unknown as z.ZodObject).shape) : [];
    const keys = (issue as { keys: string[] }).keys;
    message = `unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}` +
      (known.length ? `; allowed here: ${known.join(', ')}.${didYouMean(keys[0]!, known)}` : '');
    return fail(src, [...path, keys[0]!], message);
  }
  const where = path.length ? ` at "${path.join('.')}"` : '';
  return fail(src, path, `${message}${where}`);
}

function fail(src: YamlSource, path: Path, message: string): never {
  throw src.error(path, message);
}

/** `- sync`, `- migrate: /f`, `- migrate: {paths: [/a], recursive: true}`. */
function splitKeyword(src: YamlSource, at: Path, item: unknown, what: string): [string, unknown] {
  if (typeof item === 'string') return [item, {}];
  if (item && typeof item === 'object' && !Array.isArray(item)) {
    const keys = Object.keys(item);
    if (keys.length === 1) return [keys[0]!, (item as Record<string, unknown>)[keys[0]!]];
    fail(src, at, `a ${what} is one keyword with its arguments, e.g. "- sync" or "- migrate: /f"; found keys ${keys.join(', ')}`);
  }
  return fail(src, at, `a ${what} is a keyword such as "sync" or a one-key map, not ${JSON.stringify(item)}`);
}

function argsObject(kindScalarKey: string | undefined, value: unknown): unknown {
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    return kindScalarKey ? { [kindScalarKey]: value } : value;
  }
  return value;
}

function parseSteps(src: YamlSource, items: unknown[], scenarioName: string): Step[] {
  const kinds = Object.keys(stepArgs) as StepArgKind[];
  const used = new Map<string, number>();
  const steps: Step[] = [];
  items.forEach((item, i) => {
    const at: Path = ['steps', i];
    const [kind, value] = splitKeyword(src, at, item, 'step');
    if (!(kind in stepArgs)) {
      fail(src, at, `unknown step "${kind}".${didYouMean(kind, kinds)} Steps: ${kinds.join(', ')}`);
    }
    const k = kind as StepArgKind;
    const argPath = typeof item === 'string' ? at : [...at, kind];
    const args = check(src, argPath, stepArgs[k], argsObject(stepScalarKey[k], value)) as Record<string, unknown>;
    let stepName = (args.name as string | undefined) ?? kind;
    if (args.name === undefined) {
      const n = (used.get(kind) ?? 0) + 1;
      used.set(kind, n);
      if (n > 1) stepName = `${kind}-${n}`;
    }
    if (steps.some((s) => s.name === stepName)) fail(src, argPath, `duplicate step name "${stepName}"`);
    steps.push(toStep(k, stepName, args, scenarioName));
  });
  return steps;
}

function toStep(kind: StepArgKind, name: string, a: Record<string, unknown>, scenarioName: string): Step {
  const list = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? (v as string[]) : [v as string]);
  switch (kind) {
    case 'mount':
      return { kind, name, options: list(a.options).flatMap((o) => o.split(',')).filter(Boolean) };
    case 'umount':
    case 'sync':
    case 'drop-caches':
      return { kind, name };
    case 'migrate':
      return { kind, name, paths: list(a.paths), recursive: Boolean(a.recursive) };
    case 'write':
      return {
        kind,
        name,
        path: a.path as string,
        size: a.size as number,
        offset: (a.offset as number | undefined) ?? 0,
        append: Boolean(a.append),
        // Content is a function of scenario and step, so every machine writes the same bytes.
        seed: parseInt(sha256(`${scenarioName}/${name}`).slice(0, 8), 16),
      };
    case 'fsync':
      return { kind, name, path: a.path as string };
    case 'sync-loop':
      return { kind, name, action: a.action as 'start' | 'stop' };
    case 'writer':
      return {
        kind,
        name,
        mode: a.mode as WriterMode,
        path: a.path as string,
        size: (a.size as number | undefined) ?? 1 << 20,
        paceUs: (a.pace_us as number | undefined) ?? 500,
        action: a.action as 'start' | 'stop',
      };
    case 'sleep':
      return { kind, name, ms: a.ms as number };
  }
}

function parsePoint(src: YamlSource, at: Path, item: unknown, steps: Step[]): CrashPoint[] {
  const kinds = Object.keys(pointArgs) as PointArgKind[];
  const [kind, value] = splitKeyword(src, at, item, 'kill point');
  if (!(kind in pointArgs)) {
    fail(src, at, `unknown kill point "${kind}".${didYouMean(kind, kinds)} Kill points: ${kinds.join(', ')}`);
  }
  const k = kind as PointArgKind;
  const argPath = typeof item === 'string' ? at : [...at, kind];
  const a = check(src, argPath, pointArgs[k], argsObject(pointScalarKey[k], value)) as Record<string, unknown>;
  if (typeof a.step === 'string' && !steps.some((s) => s.name === a.step)) {
    const names = steps.map((s) => s.name);
    const m = closeMatches(a.step, names);
    fail(src, [...argPath, 'step'], `kill point refers to unknown step "${a.step}".${m.length ? ` Did you mean: ${m.join(', ')}?` : ''} Steps of this scenario: ${names.join(', ')}`);
  }
  const step = a.step as string;
  switch (k) {
    case 'none':
      return [{ kind: 'none' }];
    case 'before':
    case 'after':
      return [{ kind: k, step }];
    case 'delay':
      return [{ kind: 'delay', step, delayMs: a.ms as number }];
    case 'during':
      return [{ kind: 'during', step, windowMs: a.window_ms as number }];
    case 'kernel': {
      const [symbol, off] = splitSymbol(a.symbol as string);
      return [{ kind: 'kernel', step, symbol, offset: off, hit: (a.hit as number) ?? 1, thenHits: (a.then_hits as number) ?? 0, delayMs: (a.delay_ms as number) ?? 0, ...(a.then_commits ? { thenCommits: a.then_commits as number } : {}) }];
    }
    case 'commit':
      return [{ kind: 'commit', step, k: a.k as number }];
    case 'commits':
      return Array.from({ length: a.max as number }, (_, i) => ({ kind: 'commit' as const, step, k: i + 1 }));
    case 'kernel-hits': {
      const [symbol, off] = splitSymbol(a.symbol as string);
      const first = a.first as number;
      let hits = Array.from({ length: first }, (_, i) => i + 1);
      if (a.sample !== undefined) hits = seededSample(hits, a.sample as number, `${symbol}/${first}`);
      return hits.map((hit) => ({ kind: 'kernel' as const, step, symbol, offset: off, hit, thenHits: 0, delayMs: 0 }));
    }
  }
}

function splitSymbol(s: string): [string, number] {
  const [sym, off] = s.split('+');
  return [sym!, off === undefined ? 0 : Number(off)];
}

/** A stable sample: the same scenario expands to the same hits on every machine. */
function seededSample(items: number[], n: number, key: string): number[] {
  const scored = items.map((v) => [parseInt(sha256(`${key}/${v}`).slice(0, 8), 16), v] as const);
  return scored.sort((a, b) => a[0] - b[0]).slice(0, n).map(([, v]) => v).sort((a, b) => a - b);
}

export async function listRecipeNames(): Promise<string[]> {
  try {
    return (await readdir(recipesDir)).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -5)).sort();
  } catch {
    return [];
  }
}

/** Expand FILES|DIRS into scenario files; a directory contributes its *.yaml (not subdirectories, so known-bugs/ runs only when named). */
export async function findScenarioFiles(inputs: string[]): Promise<Array<{ file: string; suite: string }>> {
  const out: Array<{ file: string; suite: string }> = [];
  for (const input of inputs) {
    const p = resolve(input);
    let st;
    try {
      st = await stat(p);
    } catch {
      throw new ConfigError(`no such scenario file or directory: ${input}`);
    }
    if (st.isDirectory()) {
      const files = (await readdir(p)).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).sort();
      if (!files.length) throw new ConfigError(`no scenario files (*.yaml) in ${input}`);
      for (const f of files) out.push({ file: join(p, f), suite: basename(p) === 'scenarios' ? 'default' : basename(p) });
    } else {
      out.push({ file: p, suite: 'default' });
    }
  }
  return out;
}
