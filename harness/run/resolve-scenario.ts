import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../util/errors.ts';
import { closeMatches, didYouMean } from '../util/suggest.ts';
import type { Scenario, Step } from '../scenario/model.ts';
import { parseScenarioText, readScenarioFile, type ParseOptions, type ParsedScenario, type YamlPath } from '../scenario/parse.ts';
import { listRecipeNames, loadRecipe, recipePaths } from '../image/recipe.ts';
import { openUserImage, UserImageError } from '../image/user-image.ts';
import type { Manifest } from '../image/manifest.ts';

/**
 * Resolution: a parsed scenario bound to the filesystem it runs on (a
 * recipe, an image file of one's own, or --image), with every path its steps
 * name checked against that filesystem. Errors name file:line, as parsing's do.
 */

export interface ResolveOptions {
  /**
   * `--image`: run the scenario on this image file (absolute) instead of the
   * recipe or image it names (it may name neither). Its steps' paths are
   * checked against the image's manifest.
   */
  image?: string;
}

/** Read, parse and resolve one scenario file; every error names file:line. */
export async function loadScenario(file: string, opts: ParseOptions & ResolveOptions = {}): Promise<Scenario> {
  return parseScenario(file, await readScenarioFile(file), opts);
}

/** Parse and resolve a scenario's text. */
export async function parseScenario(file: string, text: string, opts: ParseOptions & ResolveOptions = {}): Promise<Scenario> {
  return resolveScenario(parseScenarioText(file, text, opts), opts);
}

export async function resolveScenario(parsed: ParsedScenario, opts: ResolveOptions = {}): Promise<Scenario> {
  const { runsOn, paths } = await findFilesystem(parsed, opts);
  checkPaths(parsed, paths);
  return { ...parsed.scenario, ...runsOn };
}

/** The paths of the filesystem a scenario runs on, and what to call it in messages. */
interface FsPaths {
  files: Set<string>;
  dirs: Set<string>;
  symlinks: Set<string>;
  label: string;
}

/** What the scenario's `recipe` or `image` becomes, and the paths of that filesystem. */
interface Filesystem {
  runsOn: { recipe: string } | { image: string };
  paths: FsPaths;
}

async function findFilesystem(parsed: ParsedScenario, opts: ResolveOptions): Promise<Filesystem> {
  const { source, recipe, image } = parsed;
  if (opts.image) {
    const arg = opts.image;
    return { runsOn: { image: arg }, paths: await imagePaths(arg, (m) => new ConfigError(`--image ${arg}: ${m}`)) };
  }
  if (recipe !== undefined && image !== undefined) {
    throw source.error(
      ['image'],
      'a scenario runs on a recipe\'s image or on an image file: give "recipe:" or "image:", not both',
    );
  }
  if (image !== undefined) return imageFile(parsed, image);
  if (recipe !== undefined) return recipeFilesystem(parsed, recipe);
  throw source.error(
    [],
    'a scenario names the filesystem it runs on: "recipe: NAME" (vm-images/recipes/), "image: FILE.img" (an image of your own, relative to this file), or run it with --image FILE.img',
  );
}

/** `image:`, an image file of one's own, relative to the scenario file. */
async function imageFile(parsed: ParsedScenario, written: string): Promise<Filesystem> {
  const image = resolve(dirname(parsed.scenario.file), written);
  if (!(await isFile(image))) throw parsed.source.error(['image'], `image file ${written} not found (looked for ${image})`);
  return { runsOn: { image }, paths: await imagePaths(image, (m) => parsed.source.error(['image'], `image ${written}: ${m}`)) };
}

/** `recipe:`, a name from vm-images/recipes/ or a path (relative to the scenario file) to a recipe of one's own. */
async function recipeFilesystem(parsed: ParsedScenario, written: string): Promise<Filesystem> {
  let recipe = written;
  if (written.includes('/') || written.endsWith('.yaml')) {
    recipe = resolve(dirname(parsed.scenario.file), written);
    if (!(await isFile(recipe))) throw parsed.source.error(['recipe'], `recipe file ${written} not found (looked for ${recipe})`);
  } else {
    const recipes = await listRecipeNames();
    if (!recipes.includes(written)) {
      throw parsed.source.error(
        ['recipe'],
        `unknown recipe "${written}" (recipes live in vm-images/recipes/, or give a path ending in .yaml).${didYouMean(written, recipes)}`,
      );
    }
  }
  return { runsOn: { recipe }, paths: { ...recipePaths(await loadRecipe(recipe)), label: "the recipe's filesystem" } };
}

function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** A user's image, opened (checked, manifest read) once per process; its bad-input errors say where it was named. */
async function imagePaths(image: string, where: (message: string) => Error): Promise<FsPaths> {
  try {
    return manifestPaths((await openUserImage(image)).manifest, image);
  } catch (e) {
    if (e instanceof UserImageError) throw where(e.message);
    throw e;
  }
}

function manifestPaths(m: Manifest, image: string): FsPaths {
  const of = (t: string) => new Set(m.entries.filter((e) => e.type === t).map((e) => e.path));
  return { files: of('file'), dirs: new Set(['/', ...of('dir')]), symlinks: of('symlink'), label: `the filesystem of ${image}` };
}

/** What is wrong with a path a step names, and where below the step's arguments. */
interface PathProblem {
  at: YamlPath;
  message: string;
}

/**
 * Every path a step names must be there when the step runs: in the recipe
 * (or the image), or made by an earlier `write` or writer. Otherwise chattr
 * or fsync fails in the guest and the case would test nothing; better a
 * file:line now.
 */
function checkPaths(parsed: ParsedScenario, fs: FsPaths): void {
  const view = new FsView(fs);
  parsed.scenario.steps.forEach((step, i) => {
    // A step allowed to fail may name what is not there on purpose.
    if (step.mayFail) return;
    const problem = pathProblem(step, view);
    if (problem) throw parsed.source.error([...(parsed.stepPaths[i] ?? []), ...problem.at], problem.message);
  });
}

/** The filesystem's paths and those the steps so far have made. */
class FsView {
  readonly created = new Set<string>();

  constructor(readonly fs: FsPaths) {}

  exists(p: string): boolean {
    return this.fs.files.has(p) || this.fs.dirs.has(p) || this.fs.symlinks.has(p) || this.created.has(p);
  }

  missing(p: string): string {
    const near = closeMatches(p, [...this.fs.files, ...this.fs.dirs, ...this.created], 3);
    return `"${p}" is not in ${this.fs.label}${near.length ? ` (close: ${near.join(', ')})` : ''}`;
  }
}

const parentOf = (p: string) => p.slice(0, p.lastIndexOf('/')) || '/';

/** The first problem with the paths `step` names; records the files it makes. */
function pathProblem(step: Step, view: FsView): PathProblem | undefined {
  const { fs, created } = view;
  switch (step.kind) {
    case 'migrate':
      return migratePathProblem(step.paths, view);
    case 'fsync':
      return view.exists(step.path) ? undefined : { at: ['path'], message: `fsync: ${view.missing(step.path)}` };
    case 'write':
      if (fs.dirs.has(step.path)) return { at: ['path'], message: `write: "${step.path}" is a directory` };
      if (!fs.dirs.has(parentOf(step.path)))
        return {
          at: ['path'],
          message: `write: the directory "${parentOf(step.path)}" is not in ${fs.label} (write creates files, not directories)`,
        };
      created.add(step.path);
      return undefined;
    case 'writer':
      if (step.action !== 'start') return undefined;
      if (step.mode === 'mmap-holes') {
        if (fs.files.has(step.path) || created.has(step.path)) return undefined;
        return {
          at: ['path'],
          message: `writer mmap-holes: ${view.missing(step.path)} (it stores into the holes of an existing file)`,
        };
      }
      if (!fs.dirs.has(parentOf(step.path)))
        return { at: ['path'], message: `writer: the directory "${parentOf(step.path)}" is not in ${fs.label}` };
      created.add(step.path);
      return undefined;
    default:
      return undefined;
  }
}

function migratePathProblem(paths: readonly string[], view: FsView): PathProblem | undefined {
  for (const [j, p] of paths.entries()) {
    if (!view.exists(p)) return { at: ['paths', j], message: `migrate: ${view.missing(p)}` };
    if (view.fs.symlinks.has(p))
      return { at: ['paths', j], message: `migrate: "${p}" is a symlink; chattr +e does not migrate symlinks` };
  }
  return undefined;
}
