import { readFile, stat, readdir } from 'node:fs/promises';
import { basename, extname, join, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../util/errors.ts';
import { scenariosDir } from '../util/paths.ts';
import { closeMatches, didYouMean } from '../util/suggest.ts';
import { sha256 } from '../util/hash.ts';
import { defaultAllowance } from '../findings/finding.ts';
import {
  stepTimeoutMs,
  type CrashStatesSpec,
  type HoldPoint,
  type KillPoint,
  type RecoveryMode,
  type Scenario,
  type Step,
} from './model.ts';
import { YamlSource } from '../util/yaml-source.ts';
import { maxCasesPerScenario } from './limits.ts';
import {
  crashStatesArgs,
  holdArgs,
  killPointCount,
  killPointSchemas,
  powerLossArgs,
  pointScalarKey,
  scenarioTop,
  stepSchemas,
  stepScalarKey,
  sysctlSettings,
  type StepDraft,
} from './schema.ts';

/** A path into the YAML document (map keys and sequence indexes), which file:line errors point at. */
export type YamlPath = Array<string | number>;
type Path = YamlPath;

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

/**
 * A scenario file parsed and checked on its own: the model, with the
 * filesystem it runs on as written. Resolution (run/resolve-scenario.ts)
 * finds that filesystem (a recipe, an image file, or --image) and checks the
 * steps' paths against it, naming file:line through `source`.
 */
export interface ParsedScenario {
  scenario: Omit<Scenario, 'recipe' | 'image'>;
  /** `recipe:` as written: a recipe's name, or the path of a recipe file relative to the scenario file. */
  recipe?: string;
  /** `image:` as written: the path of an image file relative to the scenario file. */
  image?: string;
  source: YamlSource;
  /** Where each step of `scenario.steps` was written (the YAML path of its arguments). */
  stepPaths: YamlPath[];
}

export interface ParseOptions {
  suite?: string;
  /** Most cases the scenario may expand to (default: limits.ts, or --max-cases). */
  maxCases?: number;
}

/**
 * The cases a scenario expands to, counted as its kill points and crash
 * states are read and before a generator makes its points: past the limit
 * is a ConfigError at the line that crossed it.
 */
class CaseBudget {
  private cases = 0;
  constructor(
    private readonly src: YamlSource,
    private readonly repeat: number,
    private readonly limit: number,
  ) {}

  add(at: Path, count: number, what: string): void {
    this.cases += count * this.repeat;
    if (this.cases <= this.limit) return;
    const times = this.repeat > 1 ? ` x repeat ${this.repeat}` : '';
    fail(
      this.src,
      at,
      `this scenario expands to at least ${this.cases} cases (here ${what}${times}); the limit is ${this.limit} per scenario: split the scenario, sample (kernel-hits: { sample: N }), or raise the limit with --max-cases N`,
    );
  }

  addLogUnit(spec: CrashStatesSpec): CrashStatesSpec {
    this.add(['crash-states', 'budget'], spec.budget, `a write-log budget of ${spec.budget} states`);
    return spec;
  }
}

/** The text of one scenario file; a directory, an unreadable or an oversized file is refused. */
export async function readScenarioFile(file: string): Promise<string> {
  try {
    const st = await stat(file);
    if (st.isDirectory()) throw new ConfigError('is a directory, not a scenario file', { file });
    if (st.size > maxScenarioBytes) {
      throw new ConfigError(
        `scenario file is ${(st.size / (1 << 20)).toFixed(1)} MiB; the limit is ${maxScenarioBytes >> 20} MiB (a scenario is a page of YAML)`,
        { file },
      );
    }
    return await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`cannot read scenario file: ${e instanceof Error ? e.message : String(e)}`, { file });
  }
}

/** Text to model; every error names file:line. */
export function parseScenarioText(file: string, text: string, opts: ParseOptions = {}): ParsedScenario {
  const src = YamlSource.parse(file, text);
  const top = parseTop(src);
  const name = scenarioId(file, top.name);
  const { steps, stepPaths } = parseSteps(src, top.steps, name, top.sysctl);
  const budget = new CaseBudget(src, top.repeat ?? 1, opts.maxCases ?? maxCasesPerScenario());
  const { crashPoints, pointLines } = parseKillList(src, top.kill ?? [], steps, budget);
  const held = parseHeld(src, top, steps, stepPaths, crashPoints);
  const recovery: RecoveryMode[] =
    top.recovery === undefined ? ['e2fsck', 'kernel'] : Array.isArray(top.recovery) ? top.recovery : [top.recovery];
  const scenario: ParsedScenario['scenario'] = {
    name,
    file,
    hash: sha256(text),
    ...(top.description !== undefined ? { description: top.description } : {}),
    ...(top['confirmed-on'] ? { confirmedOn: top['confirmed-on'] } : {}),
    steps,
    crashPoints,
    ...(top['crash-states'] !== undefined ? { crashStates: budget.addLogUnit(parseCrashStates(src, top['crash-states'])) } : {}),
    pointLines,
    repeat: top.repeat ?? 1,
    recovery: [...new Set(recovery)],
    allow: {
      classes: top.allow?.classes ?? defaultAllowance.classes,
      codes: top.allow?.codes ?? defaultAllowance.codes,
      ...(top.allow?.['known-bugs'] ? { knownBugs: top.allow['known-bugs'] } : {}),
    },
    suite: top.suite ?? opts.suite ?? 'default',
    ...held,
  };
  return {
    scenario,
    ...(top.recipe !== undefined ? { recipe: top.recipe } : {}),
    ...(top.image !== undefined ? { image: top.image } : {}),
    source: src,
    stepPaths,
  };
}

/** The file's top-level map, checked; a scenario asks for crash points, crash states, or both. */
function parseTop(src: YamlSource): z.output<typeof scenarioTop> {
  const raw = src.value();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw src.error(
      [],
      'a scenario file is a YAML map with at least "recipe" (or "image"), "steps" and "kill" (or "crash-states")',
    );
  }
  const top = check(src, [], scenarioTop, raw);
  if (top.kill === undefined && top['crash-states'] === undefined) {
    throw src.error([], 'a scenario needs "kill:" (crash points), "crash-states:" (states from a recorded write log), or both');
  }
  return top;
}

/** `value` checked against `schema` and transformed; the first problem is thrown at its file:line. */
function check<S extends z.ZodType>(src: YamlSource, at: Path, schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  // A misspelt key ("path" for "paths") also makes a required one missing: name the misspelling.
  const issue = r.error.issues.find((i) => i.code === 'unrecognized_keys') ?? r.error.issues[0];
  if (!issue) return fail(src, at, r.error.message);
  const path = [...at, ...issue.path.map((k) => (typeof k === 'symbol' ? String(k) : k))];
  if (issue.code === 'unrecognized_keys') {
    const known = allowedKeys(schema);
    const [first = ''] = issue.keys;
    const message =
      `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}` +
      (known.length ? `; allowed here: ${known.join(', ')}.${didYouMean(first, known)}` : '');
    return fail(src, [...path, first], message);
  }
  const where = path.length ? ` at "${path.join('.')}"` : '';
  return fail(src, path, `${issue.message}${where}`);
}

/** The keys an object schema allows, also when it is the input of a transform. */
function allowedKeys(schema: z.core.$ZodType): string[] {
  if (schema instanceof z.ZodPipe) return allowedKeys(schema.in);
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

function fail(src: YamlSource, path: Path, message: string): never {
  throw src.error(path, message);
}

/** Whether `key` is one of `table`'s own keys: a keyword of the format, never an inherited name such as "toString". */
function isKeyOf<T extends object>(table: T, key: string): key is Extract<keyof T, string> {
  return Object.hasOwn(table, key);
}

/** `- sync`, `- migrate: /f`, `- migrate: {paths: [/a], recursive: true}`. */
function splitKeyword(src: YamlSource, at: Path, item: unknown, what: string): [string, unknown] {
  if (typeof item === 'string') return [item, {}];
  if (item && typeof item === 'object' && !Array.isArray(item)) {
    const [entry, ...more] = Object.entries(item);
    if (entry && !more.length) return entry;
    fail(
      src,
      at,
      `a ${what} is one keyword with its arguments, e.g. "- sync" or "- migrate: /f"; found keys ${Object.keys(item).join(', ')}`,
    );
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

/**
 * The steps, named; a scenario's `sysctl:` becomes the first, a step named
 * `sysctl`: the settings reach the guest per case, also one restored from
 * the agent-ready state (which was saved without them).
 */
function parseSteps(
  src: YamlSource,
  items: unknown[],
  scenarioName: string,
  sysctl: unknown,
): { steps: Step[]; stepPaths: YamlPath[] } {
  const used = new Map<string, number>();
  const names = new Set<string>();
  const steps: Step[] = [];
  const stepPaths: YamlPath[] = [];
  if (sysctl !== undefined) {
    steps.push({ kind: 'sysctl', name: numberedName('sysctl', used), settings: check(src, ['sysctl'], sysctlSettings, sysctl) });
    stepPaths.push(['sysctl']);
    names.add('sysctl');
  }
  items.forEach((item, i) => {
    const { draft, at } = parseStep(src, ['steps', i], item);
    const name = draft.name ?? numberedName(draft.kind, used);
    // A set, not a scan of the steps so far: validation stays linear in the file's size.
    if (names.has(name)) fail(src, at, `duplicate step name "${name}"`);
    names.add(name);
    steps.push(named(draft, name, scenarioName));
    stepPaths.push(at);
  });
  return { steps, stepPaths };
}

/** One step item, checked against its kind's schema; `at` is where its arguments were written. */
function parseStep(src: YamlSource, at: Path, item: unknown): { draft: StepDraft; at: Path } {
  const [kind, value] = splitKeyword(src, at, item, 'step');
  if (!isKeyOf(stepSchemas, kind)) {
    const kinds = Object.keys(stepSchemas);
    fail(src, at, `unknown step "${kind}".${didYouMean(kind, kinds)} Steps: ${kinds.join(', ')}`);
  }
  const argPath = typeof item === 'string' ? at : [...at, kind];
  const draft = check(src, argPath, stepSchemas[kind], argsObject(stepScalarKey[kind], value));
  if (draft.kind === 'sleep' && draft.ms >= stepTimeoutMs) {
    fail(
      src,
      [...argPath, 'ms'],
      `a sleep of ${draft.ms} ms would outlast the step timeout (${stepTimeoutMs / 1000} s): the case would end as an error`,
    );
  }
  return { draft, at: argPath };
}

/** An unnamed step is named by its kind: `sync`, then `sync-2`, `sync-3`. */
function numberedName(kind: string, used: Map<string, number>): string {
  const n = (used.get(kind) ?? 0) + 1;
  used.set(kind, n);
  return n > 1 ? `${kind}-${n}` : kind;
}

function named(draft: StepDraft, name: string, scenarioName: string): Step {
  // Content is a function of scenario and step, so every machine writes the same bytes.
  if (draft.kind === 'write') return { ...draft, name, seed: parseInt(sha256(`${scenarioName}/${name}`).slice(0, 8), 16) };
  return { ...draft, name };
}

/** `crash-states:` with its defaults; a set that yields no state at all is refused at its line. */
function parseCrashStates(src: YamlSource, value: unknown): CrashStatesSpec {
  const at: Path = ['crash-states'];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(
      src,
      at,
      'crash-states is a map, e.g. { from: log, prefixes: all, power-loss: { per-epoch: 8, seed: 1 }, budget: 2000 }',
    );
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
    fail(
      src,
      at,
      'crash-states asks for no state: prefixes none and no power-loss states (give prefixes: all, or power-loss: { per-epoch: N })',
    );
  }
  return spec;
}

/** The `kill:` list, generators expanded, with the line each point was written on. */
function parseKillList(
  src: YamlSource,
  items: unknown[],
  steps: Step[],
  budget: CaseBudget,
): { crashPoints: KillPoint[]; pointLines: Array<number | undefined> } {
  const stepNames = new Set(steps.map((s) => s.name));
  const pointLines: Array<number | undefined> = [];
  const crashPoints = items.flatMap((item, i) => {
    const points = parsePoint(src, ['kill', i], item, steps, stepNames, budget);
    const line = src.lineOf(['kill', i]);
    for (const _ of points) pointLines.push(line);
    return points;
  });
  return { crashPoints, pointLines };
}

function parsePoint(
  src: YamlSource,
  at: Path,
  item: unknown,
  steps: Step[],
  stepNames: Set<string>,
  budget: CaseBudget,
): KillPoint[] {
  const [kind, value] = splitKeyword(src, at, item, 'kill point');
  if (!isKeyOf(killPointSchemas, kind)) {
    const kinds = Object.keys(killPointSchemas);
    fail(src, at, `unknown kill point "${kind}".${didYouMean(kind, kinds)} Kill points: ${kinds.join(', ')}`);
  }
  const argPath = typeof item === 'string' ? at : [...at, kind];
  const args = argsObject(pointScalarKey[kind], value);
  // Counted from the arguments as written: a generator's points are made only within the limit.
  const count = killPointCount(kind, args);
  budget.add(
    [...argPath, ...(count.key ? [count.key] : [])],
    count.points,
    count.key ? `${count.points} points from ${kind}'s ${count.key}` : `1 point`,
  );
  const points = check(src, argPath, killPointSchemas[kind], args);
  const unknown = points.map(stepOf).find((s) => s !== undefined && !stepNames.has(s));
  if (unknown !== undefined) {
    const names = steps.map((s) => s.name);
    const m = closeMatches(unknown, names);
    fail(
      src,
      [...argPath, 'step'],
      `kill point refers to unknown step "${unknown}".${m.length ? ` Did you mean: ${m.join(', ')}?` : ''} Steps of this scenario: ${names.join(', ')}`,
    );
  }
  return points;
}

/**
 * `cpus:`, the steps' `cpu:` pins and `hold:`, checked together: a pin or a
 * hold needs a second vCPU, a pin a vCPU that exists, a hold a step of the
 * scenario that no kernel or commit point uses (both need the gdbstub), and
 * kill points (write-log recording does not hold).
 */
function parseHeld(
  src: YamlSource,
  top: z.output<typeof scenarioTop>,
  steps: Step[],
  stepPaths: YamlPath[],
  points: KillPoint[],
): { cpus?: number; hold?: HoldPoint; holdLine?: number } {
  const cpus = top.cpus ?? 1;
  steps.forEach((step, i) => {
    if (step.cpu === undefined) return;
    const at = [...stepPaths[i]!, 'cpu'];
    if (cpus < 2)
      fail(
        src,
        at,
        `step "${step.name}" is pinned to vCPU ${step.cpu}, but the guest has 1 vCPU: add "cpus: 2" (or more) at the top of the scenario`,
      );
    if (step.cpu >= cpus)
      fail(
        src,
        at,
        `step "${step.name}" is pinned to vCPU ${step.cpu}, but the guest has ${cpus} (cpus: ${cpus}: vCPUs 0 to ${cpus - 1})`,
      );
  });
  if (top.hold === undefined) return top.cpus !== undefined ? { cpus } : {};
  if (top.hold === null || typeof top.hold !== 'object' || Array.isArray(top.hold)) {
    fail(
      src,
      ['hold'],
      'hold is a map, e.g. { step: migrate, symbol: ext4_ext_migrate, after-call: finish_range, until: { stores: 8 }, limit-ms: 3000 }',
    );
  }
  const hold = check(src, ['hold'], holdArgs, top.hold);
  if (cpus < 2)
    fail(src, ['hold'], 'a hold stops one vCPU while another runs: add "cpus: 2" (or more) at the top of the scenario');
  const names = steps.map((s) => s.name);
  if (!names.includes(hold.step)) {
    const m = closeMatches(hold.step, names);
    fail(
      src,
      ['hold', 'step'],
      `hold refers to unknown step "${hold.step}".${m.length ? ` Did you mean: ${m.join(', ')}?` : ''} Steps of this scenario: ${names.join(', ')}`,
    );
  }
  const clash = points.find((p) => (p.kind === 'kernel' || p.kind === 'commit') && p.step === hold.step);
  if (clash)
    fail(
      src,
      ['hold', 'step'],
      `the hold and a ${clash.kind} kill point are both on step "${hold.step}", and both need the gdbstub: put the kill point on another step`,
    );
  if (top['crash-states'] !== undefined)
    fail(
      src,
      ['hold'],
      'a held scenario takes its crash states from "kill:" points: a write-log recording (crash-states:) does not hold',
    );
  const line = src.lineOf(['hold']);
  return { cpus, hold, ...(line !== undefined ? { holdLine: line } : {}) };
}

function stepOf(p: KillPoint): string | undefined {
  return p.kind === 'none' ? undefined : p.step;
}

/** Expand FILES|DIRS into scenario files; a directory contributes its *.yaml (not subdirectories, so known-bugs/ runs only when named). */
export async function findScenarioFiles(inputs: string[]): Promise<Array<{ file: string; suite: string }>> {
  const out: Array<{ file: string; suite: string }> = [];
  const seen = new Set<string>();
  const add = (file: string, suite: string) => {
    // A folder and a file inside it name that file twice: it is one scenario.
    if (seen.has(file)) return;
    seen.add(file);
    out.push({ file, suite });
  };
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
      for (const f of files) add(join(p, f), basename(p) === 'scenarios' ? 'default' : basename(p));
    } else {
      add(p, 'default');
    }
  }
  return out;
}
