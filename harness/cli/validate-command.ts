import type { Command } from 'commander';
import { signalIsTheCause } from '../util/cleanup.ts';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  readValidateArgs,
  validatePatch,
  validateExitCode,
  validateReport,
  type ValidateOptions,
  type ValidateResult,
} from '../validate/validate.ts';
import { patchPassed, seriesReport, validateSeries } from '../validate/series.ts';
import { mutantsSummary, type MutantOutcome } from '../validate/mutants-summary.ts';
import { ProgressReporter } from '../report/progress.ts';
import { streamProgressSink } from '../kernel/build-progress.ts';
import { ExitCode, ConfigError } from '../util/errors.ts';
import { collect, intArg, maxCasesArg, maxCasesHelp } from './run-command.ts';
import { parseShardSpec, type ShardSpec } from '../run/shard.ts';
import { returnsExitCode } from './exit-code.ts';
import { worstExitCode } from '../results/verdict.ts';
import { defaultLine, kernelLine } from '../kernel/lines.ts';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description(
      'build baseline and patched kernels, run the same cases on both, report what the patch (or, with --series, each patch of a series) changed (exit 1 if one introduced a finding, 3 if a case could not be judged on the patched kernel)',
    )
    .argument('[scenarios...]', 'scenario files or directories (default: scenarios/)')
    .option('--patch <file>', 'patches to test, applied in order (repeatable); judged together unless --series', collect)
    .option(
      '--series',
      'judge each patch on its own: build the baseline and every prefix (1, 1-2, 1-3, ...), name the patch that introduced each finding; a --patch may be an mbox of several patches (git format-patch, b4 am), mails without a diff (cover letters) are skipped',
    )
    .option(
      '--mutants <dir>',
      'validate every *.patch in DIR, one at a time (e.g. ../shared/mutants), against one baseline run; ends with a line per patch, flagged or MISSED (exit 1 if one is missed)',
    )
    .option(
      '--line <line>',
      "kernel line: 6.1 or 6.12; the baseline and patched kernels come from its Debian linux-source tarball (or --tree) with that line's config fragments",
      '6.1',
    )
    .option('--tree <dir>', "kernel git tree (default: the --line's Debian linux-source tarball)")
    .option('--config <frag>', 'config fragments (default: kernels/configs/minimal.config) (repeatable)', collect)
    .option('--seed <n>', 'seed for both runs', intArg('--seed'), 1)
    .option('-j, --jobs <n>', 'VMs at once', intArg('--jobs', 1))
    .option('--confirm <n>', 'reruns to confirm a new finding', intArg('--confirm'), 2)
    .option('-o, --out <dir>', 'output directory')
    .option('--max-cases <n>', maxCasesHelp, maxCasesArg)
    .option(
      '--shard <I/N>',
      "run only the I-th of N parts of the cases on both kernels (and confirm that part's new findings); join the parts with qcrash merge OUT DIR...",
      parseShardSpec,
    )
    .option(
      '--resume <out>',
      'finish an interrupted validate --patch in OUT, with the inputs it started with: finished runs are kept, the interrupted one resumed (only --jobs may be given)',
    )
    .action(returnsExitCode(signalIsTheCause(runValidate)));
}

interface ValidateCommandOptions {
  patch?: string[];
  series?: boolean;
  mutants?: string;
  line: string;
  tree?: string;
  config?: string[];
  seed: number;
  jobs?: number;
  confirm: number;
  out?: string;
  shard?: ShardSpec;
  resume?: string;
}

/** What every kind of validate shares; kernel builds rewrite one progress line in place on a terminal. */
type SharedInputs = Omit<ValidateOptions, 'patches'>;

async function runValidate(scenarios: string[], o: ValidateCommandOptions, cmd: Command): Promise<number> {
  const shared: SharedInputs = {
    scenarios,
    seed: o.seed,
    confirmRuns: o.confirm,
    ...(o.line !== defaultLine.name ? { line: kernelLine(o.line).name } : {}),
    ...(o.tree ? { tree: o.tree } : {}),
    ...(o.config ? { configs: o.config } : {}),
    ...(o.jobs ? { jobs: o.jobs } : {}),
    reporters: [new ProgressReporter()],
    onProgress: streamProgressSink(process.stderr, 'qcrash: '),
  };
  if (o.resume) return resumeValidate(o.resume, scenarios, shared, cmd);
  if (o.series) return validateAsSeries(o, shared);
  return validatePatchSets(await patchSets(o), o, shared);
}

/** --resume OUT: finish with the inputs OUT records; an input given again is refused, not mixed in. */
async function resumeValidate(out: string, scenarios: string[], shared: SharedInputs, cmd: Command): Promise<number> {
  const given = ['patch', 'series', 'mutants', 'line', 'tree', 'config', 'seed', 'confirm', 'out', 'shard'].filter(
    (k) => cmd.getOptionValueSource(k) === 'cli',
  );
  if (scenarios.length || given.length)
    throw new ConfigError(
      `--resume ${out} finishes the validation with the inputs it started with; ${[...(scenarios.length ? ['scenario arguments'] : []), ...given.map((k) => `--${k}`)].join(', ')} cannot change it (only --jobs may be given)`,
    );
  const r = await validatePatch({ ...shared, ...(await readValidateArgs(out)), out, resume: true });
  process.stdout.write(validateReport(r));
  process.stderr.write(`qcrash: validate results in ${r.dir}\n`);
  return validateExitCode(r);
}

/** --series: each prefix of the --patch series judged on its own kernel. */
async function validateAsSeries(o: ValidateCommandOptions, shared: SharedInputs): Promise<number> {
  if (o.mutants)
    throw new ConfigError(
      '--series and --mutants do not go together: --mutants validates each patch of DIR alone, --series judges --patch files as one series',
    );
  if (o.shard)
    throw new ConfigError(
      '--series does not take --shard yet: each prefix of the series is judged on its own kernel; shard a plain validate instead',
    );
  if (!o.patch?.length)
    throw new ConfigError('--series needs the series: --patch FILE... (patch files in order, or an mbox such as b4 am writes)');
  const r = await validateSeries({ ...shared, patches: o.patch, ...(o.out ? { out: o.out } : {}) });
  process.stdout.write(seriesReport(r));
  process.stderr.write(`qcrash: validate results in ${r.dir}\n`);
  return r.steps.some((s) => !patchPassed(s)) ? ExitCode.failed : ExitCode.pass;
}

/** The patch sets to validate one after another: each *.patch of --mutants alone, or the --patch files together. */
async function patchSets(o: ValidateCommandOptions): Promise<string[][]> {
  const dir = o.mutants;
  if (dir) {
    const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.patch')).sort();
    if (!files.length) throw new ConfigError(`no *.patch files in ${dir}`);
    return files.map((f) => [resolve(join(dir, f))]);
  }
  if (o.patch?.length) return [o.patch];
  throw new ConfigError('give --patch FILE... (or --mutants DIR)');
}

/** Each set validated in turn; exit 1 if a --patch set introduced a finding, or a mutant introduced none. */
async function validatePatchSets(sets: string[][], o: ValidateCommandOptions, shared: SharedInputs): Promise<number> {
  let code: number = ExitCode.pass;
  // --mutants: the baseline runs once; every later patch is judged against that run.
  let baselineRun: ValidateResult['baseline'] | undefined;
  const mutants: MutantOutcome[] = [];
  for (const patches of sets) {
    const r = await validatePatch({
      ...shared,
      patches,
      ...(baselineRun ? { baselineRun } : {}),
      ...(o.shard ? { shard: o.shard } : {}),
      ...(o.out ? { out: sets.length > 1 ? join(o.out, patches[0]!.split('/').pop()!) : o.out } : {}),
    });
    process.stdout.write(validateReport(r));
    process.stderr.write(`qcrash: validate results in ${r.dir}\n`);
    baselineRun ??= r.baseline;
    if (r.shard) {
      // A part has no verdict of its own: the merge of every part judges.
      process.stderr.write(
        `qcrash: this is shard ${r.shard.index}/${r.shard.total}; judge the whole with: qcrash merge OUT ${r.dir} (and the other shards' folders)\n`,
      );
      continue;
    }
    if (o.mutants) mutants.push({ patch: patches[0]!, result: r });
    if (o.mutants && !r.introduced.length) {
      process.stdout.write(`MISSED: ${patches[0]} introduced no finding\n`);
      code = ExitCode.failed;
    }
    if (!o.mutants) code = worstExitCode([code, validateExitCode(r)]);
  }
  process.stdout.write(mutantsSummary(mutants));
  return code;
}
