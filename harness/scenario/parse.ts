import { readFile, stat, readdir } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import type { z } from 'zod';
import { ConfigError } from '../util/errors.ts';
import { scenariosDir } from '../util/paths.ts';
import { closeMatches, didYouMean } from '../util/suggest.ts';
import { sha256 } from '../util/hash.ts';
import { defaultAllowance } from '../findings/finding.ts';
import { stepTimeoutMs, type CrashStatesSpec, type KillPoint, type RecoveryMode, type Scenario, type Step, type WriterMode } from './model.ts';
import { YamlSource } from '../util/yaml-source.ts';
import { listRecipeNames, loadRecipe, recipePaths } from '../image/recipe.ts';
import { openUserImage, UserImageError } from '../image/user-image.ts';
import type { BaseImage } from '../image/build.ts';
import type { Manifest } from '../image/manifest.ts';
import {
  crashStatesArgs,
  pointArgs,
  powerLossArgs,
  pointScalarKey,
  scenarioTop,
  stepArgs,
  stepScalarKey,
  type PointArgKind,
  type StepArgKind,
} from './schema.ts';

type Path = Array<string | number>;

/**
 * A scenario is a page of YAML; a file far larger is a mistake (a log
 * pasted in, a generator gone wrong) that would otherwise take minutes and
 * gigabytes to reject.
 */
export const maxScenarioBytes = 1 << 20;

/**
 * The id a scenario's cases are named by: its `name:`, else its path below
 * the project's scenarios/ folder without .yaml (`validate/durability`),
 * else the file's base name. Two scenarios of one run may not share one.
 */
export function scenarioId(file: string, name?: string): string {
  if (name) return name;
  const rel = relative(scenariosDir, resolve(file));
  if (!rel.startsWith('..') && !rel.startsWith(sep) && rel !== '') return rel.slice(0, -extname(rel).length).split(sep).join('/');
  return basename(file, extname(file));
}

/** Read and validate one scenario file; every error names file:line. */
export async function loadScenario(file: string, opts: ParseOptions = {}): Promise<Scenario> {
  let text: string;
  try {
    const st = await stat(file);
    if (st.isDirectory()) throw new ConfigError('is a directory, not a scenario file', { file });
    if (st.size > maxScenarioBytes) {
      throw new ConfigError(`scenario file is ${(st.size / (1 << 20)).toFixed(1)} MiB; the limit is ${maxScenarioBytes >> 20} MiB (a scenario is a page of YAML)`, { file });
    }
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`cannot read scenario file: ${(e as Error).message}`, { file });
  }
  return parseScenario(file, text, opts);
}

export interface ParseOptions {
  suite?: string;
  /**
   * `--image`: run the scenario on this image file (absolute) instead of the
   * recipe or image it names (it may name neither). Its steps' paths are
   * checked against the image's manifest.
   */
  image?: string;
}

export async function parseScenario(file: string, text: string, opts: ParseOptions = {}): Promise<Scenario> {
  const src = YamlSource.parse(file, text);
  const raw = src.value();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw src.error([], 'a scenario file is a YAML map with at least "recipe" (or "image"), "steps" and "kill" (or "crash-states")');
  }
  const top = check(src, [], scenarioTop, raw);
  if (top.kill === undefined && top['crash-states'] === undefined) {
    throw src.error([], 'a scenario needs "kill:" (crash points), "crash-states:" (states from a recorded write log), or both');
  }

  let recipe: string | undefined;
  let image: string | undefined;
  let fsPaths: FsPaths;
  if (opts.image) {
    image = opts.image;
    fsPaths = manifestPaths((await openImage(image, (m) => new ConfigError(`--image ${image}: ${m}`))).manifest, image);
  } else if (top.recipe !== undefined && top.image !== undefined) {
    throw src.error(['image'], 'a scenario runs on a recipe\'s image or on an image file: give "recipe:" or "image:", not both');
  } else if (top.image !== undefined) {
    // An image file of one's own, relative to the scenario file.
    image = resolve(dirname(file), top.image);
    if (!(await stat(image).then((s) => s.isFile(), () => false))) throw src.error(['image'], `image file ${top.image} not found (looked for ${image})`);
    fsPaths = manifestPaths((await openImage(image, (m) => src.error(['image'], `image ${top.image}: ${m}`))).manifest, image);
  } else if (top.recipe !== undefined) {
    // A recipe is a name from vm-images/recipes/ or a path (relative to the scenario file) to a recipe of one's own.
    recipe = top.recipe;
    if (recipe.includes('/') || recipe.endsWith('.yaml')) {
      recipe = resolve(dirname(file), recipe);
      if (!(await stat(recipe).then((s) => s.isFile(), () => false))) throw src.error(['recipe'], `recipe file ${top.recipe} not found (looked for ${recipe})`);
    } else {
      const recipes = await listRecipeNames();
      if (!recipes.includes(top.recipe)) {
        throw src.error(['recipe'], `unknown recipe "${top.recipe}" (recipes live in vm-images/recipes/, or give a path ending in .yaml).${didYouMean(top.recipe, recipes)}`);
      }
    }
    fsPaths = { ...recipePaths(await loadRecipe(recipe)), label: 'the recipe\'s filesystem' };
  } else {
    throw src.error([], 'a scenario names the filesystem it runs on: "recipe: NAME" (vm-images/recipes/), "image: FILE.img" (an image of your own, relative to this file), or run it with --image FILE.img');
  }

  const name = scenarioId(file, top.name);
  const steps = parseSteps(src, top.steps, name);
  checkPaths(src, steps, fsPaths);
  const stepNames = new Set(steps.map((s) => s.name));
  const pointLines: Array<number | undefined> = [];
  const crashPoints = (top.kill ?? []).flatMap((item, i) => {
    const points = parsePoint(src, ['kill', i], item, steps, stepNames);
    const line = src.lineOf(['kill', i]);
    for (const _ of points) pointLines.push(line);
    return points;
  });
  const recovery: RecoveryMode[] = top.recovery === undefined ? ['e2fsck', 'kernel'] : Array.isArray(top.recovery) ? top.recovery : [top.recovery];

  return {
    name,
    file,
    hash: sha256(text),
    ...(top.description !== undefined ? { description: top.description } : {}),
    ...(recipe !== undefined ? { recipe } : {}),
    ...(image !== undefined ? { image } : {}),
    steps,
    crashPoints,
    ...(top['crash-states'] !== undefined ? { crashStates: parseCrashStates(src, top['crash-states']) } : {}),
    pointLines,
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

/** Where each step was written, for errors about its arguments. */
const stepPaths = new WeakMap<Step, Path>();

function parseSteps(src: YamlSource, items: unknown[], scenarioName: string): Step[] {
  const kinds = Object.keys(stepArgs) as StepArgKind[];
  const used = new Map<string, number>();
  const names = new Set<string>();
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
    // A set, not a scan of the steps so far: validation stays linear in the file's size.
    if (names.has(stepName)) fail(src, argPath, `duplicate step name "${stepName}"`);
    names.add(stepName);
    if (k === 'sleep' && (args.ms as number) >= stepTimeoutMs) {
      fail(src, [...argPath, 'ms'], `a sleep of ${args.ms} ms would outlast the step timeout (${stepTimeoutMs / 1000} s): the case would end as an error`);
    }
    const parsed = toStep(k, stepName, args, scenarioName);
    const step = args.may_fail ? { ...parsed, mayFail: true } : parsed;
    stepPaths.set(step, argPath);
    steps.push(step);
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

/** The paths of the filesystem a scenario runs on, and what to call it in messages. */
interface FsPaths {
  files: Set<string>;
  dirs: Set<string>;
  symlinks: Set<string>;
  label: string;
}

function manifestPaths(m: Manifest, image: string): FsPaths {
  const of = (t: string) => new Set(m.entries.filter((e) => e.type === t).map((e) => e.path));
  return { files: of('file'), dirs: new Set(['/', ...of('dir')]), symlinks: of('symlink'), label: `the filesystem of ${image}` };
}

/** A user's image, opened (checked, manifest read) once per process; its bad-input errors said where it was named. */
async function openImage(path: string, where: (message: string) => Error): Promise<BaseImage> {
  try {
    return await openUserImage(path);
  } catch (e) {
    if (e instanceof UserImageError) throw where(e.message);
    throw e;
  }
}

/**
 * Every path a step names must be there when the step runs: in the recipe
 * (or the image), or made by an earlier `write` or writer. Otherwise chattr
 * or fsync fails in the guest and the case would test nothing; better a
 * file:line now.
 */
function checkPaths(src: YamlSource, steps: readonly Step[], recipe: FsPaths): void {
  const created = new Set<string>();
  const exists = (p: string) => recipe.files.has(p) || recipe.dirs.has(p) || recipe.symlinks.has(p) || created.has(p);
  const parent = (p: string) => p.slice(0, p.lastIndexOf('/')) || '/';
  const where = (step: Step, ...more: Path) => [...(stepPaths.get(step) ?? []), ...more];
  const missing = (p: string) => {
    const near = closeMatches(p, [...recipe.files, ...recipe.dirs, ...created], 3);
    return `"${p}" is not in ${recipe.label}${near.length ? ` (close: ${near.join(', ')})` : ''}`;
  };
  for (const step of steps) {
    // A step allowed to fail may name what is not there on purpose.
    if (step.mayFail) continue;
    switch (step.kind) {
      case 'migrate':
        step.paths.forEach((p, j) => {
          if (!exists(p)) fail(src, where(step, 'paths', j), `migrate: ${missing(p)}`);
          if (recipe.symlinks.has(p)) fail(src, where(step, 'paths', j), `migrate: "${p}" is a symlink; chattr +e does not migrate symlinks`);
        });
        break;
      case 'fsync':
        if (!exists(step.path)) fail(src, where(step, 'path'), `fsync: ${missing(step.path)}`);
        break;
      case 'write':
        if (recipe.dirs.has(step.path)) fail(src, where(step, 'path'), `write: "${step.path}" is a directory`);
        if (!recipe.dirs.has(parent(step.path))) fail(src, where(step, 'path'), `write: the directory "${parent(step.path)}" is not in ${recipe.label} (write creates files, not directories)`);
        created.add(step.path);
        break;
      case 'writer':
        if (step.action !== 'start') break;
        if (step.mode === 'mmap-holes') {
          if (!recipe.files.has(step.path) && !created.has(step.path)) fail(src, where(step, 'path'), `writer mmap-holes: ${missing(step.path)} (it stores into the holes of an existing file)`);
        } else {
          if (!recipe.dirs.has(parent(step.path))) fail(src, where(step, 'path'), `writer: the directory "${parent(step.path)}" is not in ${recipe.label}`);
          created.add(step.path);
        }
        break;
      default:
        break;
    }
  }
}

/** `crash-states:` with its defaults; a set that yields no state at all is refused at its line. */
function parseCrashStates(src: YamlSource, value: unknown): CrashStatesSpec {
  const at: Path = ['crash-states'];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(src, at, 'crash-states is a map, e.g. { from: log, prefixes: all, power-loss: { per-epoch: 8, seed: 1 }, budget: 2000 }');
  }
  const a = check(src, at, crashStatesArgs, value);
  const pl = a['power-loss'];
  const power = pl === false || pl === 'none' ? undefined : check(src, [...at, 'power-loss'], powerLossArgs, pl ?? {});
  const spec: CrashStatesSpec = {
    from: 'log',
    prefixes: a.prefixes ?? 'all',
    perEpoch: power ? (power['per-epoch'] ?? 8) : 0,
    seed: power?.seed ?? 1,
    subsets: power?.subsets ?? 4,
    torn: power?.torn ?? false,
    budget: a.budget ?? 1000,
    kernelSample: a['kernel-sample'] ?? 4,
    minimize: a.minimize ?? 4,
    minimizeTests: a['minimize-tests'] ?? 64,
    end: a.end ?? 'poweroff',
  };
  if (spec.prefixes === 'none' && spec.perEpoch === 0) {
    fail(src, at, 'crash-states asks for no state: prefixes none and no power-loss states (give prefixes: all, or power-loss: { per-epoch: N })');
  }
  return spec;
}

function parsePoint(src: YamlSource, at: Path, item: unknown, steps: Step[], stepNames: Set<string>): KillPoint[] {
  const kinds = Object.keys(pointArgs) as PointArgKind[];
  const [kind, value] = splitKeyword(src, at, item, 'kill point');
  if (!(kind in pointArgs)) {
    fail(src, at, `unknown kill point "${kind}".${didYouMean(kind, kinds)} Kill points: ${kinds.join(', ')}`);
  }
  const k = kind as PointArgKind;
  const argPath = typeof item === 'string' ? at : [...at, kind];
  const a = check(src, argPath, pointArgs[k], argsObject(pointScalarKey[k], value)) as Record<string, unknown>;
  if (typeof a.step === 'string' && !stepNames.has(a.step)) {
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
