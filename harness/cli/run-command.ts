import { Option, type Command } from 'commander';
import { signalIsTheCause } from '../util/cleanup.ts';
import { defaultMaxCases, setMaxCases } from '../scenario/limits.ts';
import { availableParallelism } from 'node:os';
import { jobsOrDefault, memorySlots, vmMemoryMiB } from '../vm/machine/pool.ts';
import { listSuite, runSuite, type SuiteOptions } from '../run/runner.ts';
import type { CaseSelection } from '../run/case-selection.ts';
import { defaultKeep } from '../run/case-runner.ts';
import { exitCodeFor, worstExitCode } from '../results/verdict.ts';
import { ProgressReporter } from '../report/progress.ts';
import { StdoutReporter, stdoutFormats, type StdoutFormat } from '../report/stdout.ts';
import { ConfigError, ExitCode } from '../util/errors.ts';
import type { RecoveryMode } from '../scenario/model.ts';
import { parseShardSpec, type ShardSpec } from '../run/shard.ts';
import { returnsExitCode } from './exit-code.ts';
import { splitKernelList } from '../kernel/lines.ts';
import { runKernelMatrix } from '../run/kernel-matrix.ts';
import { matrixText } from '../report/matrix.ts';
import type { Reporter } from '../report/reporter.ts';

/** A repeatable option: --patch a --patch b (a variadic option would swallow the positional arguments after it). */
export function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

export function intArg(name: string, min = 0) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new ConfigError(`${name} must be a whole number >= ${min}, got "${v}"`);
    return n;
  };
}

/** --max-cases N: the per-scenario case limit for this process, set as the option is read (before any scenario is parsed). */
export function maxCasesArg(v: string): number {
  const n = intArg('--max-cases', 1)(v);
  setMaxCases(n);
  return n;
}
export const maxCasesHelp = `most cases one scenario may expand to (default ${defaultMaxCases}; crash points x repeat, plus write-log budgets x repeat)`;

interface RunCommandOptions {
  list?: boolean;
  image?: string;
  kernel: string;
  jobs: number;
  seed?: number;
  out?: string;
  keep: 'failed' | 'all' | 'none';
  resume?: string;
  recovery?: string;
  filter?: string[];
  format: StdoutFormat;
  snapshot: boolean;
  shard?: ShardSpec;
  durations?: string;
}

function suiteOptions(inputs: string[], o: RunCommandOptions): SuiteOptions {
  const recovery = o.recovery ? parseRecovery(o.recovery) : undefined;
  return {
    inputs,
    ...(o.image !== undefined ? { image: o.image } : {}),
    kernel: o.kernel,
    jobs: o.jobs,
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
    ...(o.out ? { out: o.out } : {}),
    keep: o.keep,
    ...(o.resume ? { resume: o.resume } : {}),
    ...(recovery ? { recovery } : {}),
    ...(o.filter ? { filter: o.filter } : {}),
    snapshots: o.snapshot,
    ...(o.shard ? { shard: o.shard } : {}),
    ...(o.durations ? { durationsFrom: o.durations } : {}),
  };
}

/** --list: one line a case, each write-log recording with its state budget, then the count. */
function printCaseList({ cases, units }: CaseSelection): number {
  const lines = [
    ...cases.map((c) => c.id),
    ...units.map(
      (u) => `${u.id}  (write-log recording: up to ${u.scenario.crashStates?.budget ?? 0} crash states, known once recorded)`,
    ),
  ];
  const states = units.reduce((n, u) => n + (u.scenario.crashStates?.budget ?? 0), 0);
  lines.push(`${cases.length} kill case(s) and ${units.length} write-log recording(s) of up to ${states} crash state(s)`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return ExitCode.pass;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run scenarios (default: scenarios/*.yaml) on a kernel and report findings')
    .argument(
      '[scenarios...]',
      'scenario files or directories (a directory runs its *.yaml; scenarios/known-bugs/ runs only when named)',
    )
    .option(
      '--image <file>',
      'run on a copy of this block-mapped ext3/ext4 filesystem image of your own (never written); with no scenario named, the built-in set for it',
    )
    .option(
      '--kernel <spec>',
      'stock (6.1), stock-6.12, a built kernel id (qcrash kernel list), or a bzImage path; several, comma-separated (stock,stock-6.12), run the suite on each into <out>/<kernel>/ and report the kernel x scenario matrix',
      'stock',
    )
    .addOption(
      new Option('-j, --jobs <n>', 'VMs at once')
        .argParser(intArg('--jobs', 1))
        .default(jobsOrDefault(), 'one per core, as many as free memory holds'),
    )
    .option('--seed <n>', 'run seed (cases derive theirs from it and their id)', intArg('--seed'))
    .option('-o, --out <dir>', 'result directory (default: results/<run-id>)')
    .addOption(
      new Option('--keep <what>', 'crash images to keep in the case folders')
        .choices(['failed', 'all', 'none'])
        .default(defaultKeep),
    )
    .option('--resume <dir>', 'resume an interrupted run: cases already written are not run again')
    .addOption(new Option('--recovery <modes>', 'override recovery modes: e2fsck, kernel or e2fsck,kernel'))
    .option('--filter <text>', 'only cases whose id contains one of these (repeatable)', collect)
    .option('--no-snapshot', 'boot every workload VM instead of restoring the saved agent-ready state')
    .addOption(new Option('--format <fmt>', 'what to print on stdout').choices([...stdoutFormats]).default('text'))
    .option(
      '--shard <I/N>',
      'run only the I-th of N parts of the cases (I from 1), the same partition on every machine; join the parts with qcrash merge',
      parseShardSpec,
    )
    .option('--max-cases <n>', maxCasesHelp, maxCasesArg)
    .option(
      '--durations <runDir>',
      'with --shard: balance the parts by the case durations of this earlier run (give every shard the same one)',
    )
    .option('--list', 'print the cases the command would run, with their count, and exit 0: builds, boots and writes nothing')
    .action(returnsExitCode(signalIsTheCause(runScenarios)));
}

async function runScenarios(inputs: string[], o: RunCommandOptions, cmd: Command): Promise<number> {
  if (o.resume) refuseResumeChanges(o.resume, inputs, cmd);
  checkJobs(o.jobs);
  if (o.list) return printCaseList(await listSuite(suiteOptions(inputs, o)));
  const reporters = [new ProgressReporter(), new StdoutReporter(o.format)];
  const suite = suiteOptions(inputs, o);
  const kernels = o.resume ? [o.kernel] : splitKernelList(o.kernel);
  // JSON on stdout stays one document: the matrix with every kernel's summary.
  if (kernels.length > 1) {
    const { kernel: _k, out: _o, resume: _r, ...common } = suite;
    return runMatrix(common, kernels, o.out, o.format === 'json' ? [reporters[0]!] : reporters, o.format === 'json');
  }
  const { summary, dir, reporterFailures } = await runSuite({ ...suite, reporters });
  if (summary.shard && !summary.cases.length) {
    const s = summary.shard;
    process.stderr.write(
      `qcrash: shard ${s.index}/${s.total} has no case: the partition gave all ${s.assignment.flat().length} case(s) to the other shards (more shards than units). Its folder records that; merge counts it as present.\n`,
    );
  }
  process.stderr.write(`qcrash: results in ${dir}\n`);
  return runExitCode(summary, reporterFailures);
}

/** A resumed run is the run run.json describes: options that would change what it tests are refused, not mixed in. */
function refuseResumeChanges(resume: string, inputs: string[], cmd: Command): void {
  const given = ['image', 'kernel', 'seed', 'out', 'keep', 'recovery', 'filter', 'snapshot', 'shard', 'durations'].filter(
    (k) => cmd.getOptionValueSource(k) === 'cli',
  );
  if (inputs.length || given.length) {
    throw new ConfigError(
      `--resume ${resume} finishes the run as its run.json configured it; ${[...(inputs.length ? ['scenario arguments'] : []), ...given.map((k) => `--${k === 'snapshot' ? 'no-snapshot' : k}`)].join(', ')} cannot change it (only --jobs and --format may be given)`,
    );
  }
}

/** A run's exit code; an output that could not be written is not a green run. */
function runExitCode(
  summary: Parameters<typeof exitCodeFor>[0],
  reporterFailures: ReadonlyArray<{ reporter: string; error: string }>,
): number {
  const code = exitCodeFor(summary);
  if (reporterFailures.length && code === ExitCode.pass) {
    process.stderr.write(`qcrash: ${reporterFailures.map((f) => `${f.reporter} output missing (${f.error})`).join('; ')}\n`);
    return ExitCode.infrastructure;
  }
  return code;
}

/** `--kernel a,b`: the suite on each kernel, then the matrix; exit 1 if any kernel failed, else 3 if any was not green, else 0. */
async function runMatrix(
  suite: Omit<SuiteOptions, 'kernel' | 'reporters'>,
  kernels: string[],
  out: string | undefined,
  reporters: Reporter[],
  json: boolean,
): Promise<number> {
  const m = await runKernelMatrix({ ...suite, kernels, ...(out ? { out } : {}), reporters });
  if (json) process.stdout.write(JSON.stringify({ matrix: m.matrix, runs: m.runs.map((r) => r.summary) }, null, 2) + '\n');
  else process.stdout.write(`\n${matrixText(m.matrix)}`);
  process.stderr.write(`qcrash: results in ${m.dir} (one run folder per kernel, matrix.txt and matrix.json beside them)\n`);
  const codes = m.runs.map((r) => runExitCode(r.summary, r.outcome.reporterFailures));
  return worstExitCode(codes);
}

/**
 * More VMs than free memory holds would be killed by the OOM killer halfway
 * through a run; more than a few per core only queue up behind each other.
 */
function checkJobs(jobs: number): void {
  const max = Math.min(memorySlots(), availableParallelism() * 8);
  if (jobs > max) {
    throw new ConfigError(
      `--jobs ${jobs}: this machine holds at most ${max} VMs at once (${availableParallelism()} cores, free memory for ${memorySlots()} at ${vmMemoryMiB} MiB each); give --jobs ${Math.min(max, availableParallelism())} or leave it out`,
    );
  }
}

export function parseRecovery(v: string): RecoveryMode[] {
  const modes = v.split(',').map((x) => x.trim());
  for (const m of modes)
    if (m !== 'e2fsck' && m !== 'kernel') throw new ConfigError(`--recovery: unknown mode "${m}" (e2fsck, kernel)`);
  return modes as RecoveryMode[];
}
