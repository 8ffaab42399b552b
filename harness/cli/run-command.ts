import { Option, type Command } from 'commander';
import { defaultJobs } from '../run/jobs.ts';
import { runSuite } from '../run/runner.ts';
import { exitCodeFor } from '../report/exit-code.ts';
import { ProgressReporter } from '../report/progress.ts';
import { TapReporter } from '../report/tap.ts';
import { textReport } from '../report/text.ts';
import { junitDocument } from '../report/junit.ts';
import { kcidbDocument } from '../report/kcidb.ts';
import type { Reporter } from '../report/reporter.ts';
import { ConfigError } from '../util/errors.ts';
import type { RecoveryMode } from '../scenario/model.ts';

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

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run scenarios (default: scenarios/*.yaml) on a kernel and report findings')
    .argument('[scenarios...]', 'scenario files or directories (a directory runs its *.yaml; scenarios/known-bugs/ runs only when named)')
    .option('--kernel <spec>', 'stock, a built kernel id (qcrash kernel list), or a bzImage path', 'stock')
    .option('-j, --jobs <n>', 'VMs at once (default: one per core, as many as free memory holds)', intArg('--jobs', 1), defaultJobs())
    .option('--seed <n>', 'run seed (cases derive theirs from it and their id)', intArg('--seed'))
    .option('-o, --out <dir>', 'result directory (default: results/<run-id>)')
    .addOption(new Option('--keep <what>', 'crash images to keep in the case folders').choices(['failed', 'all', 'none']).default('all'))
    .option('--resume <dir>', 'resume an interrupted run: cases already written are not run again')
    .addOption(new Option('--recovery <modes>', 'override recovery modes: e2fsck, kernel or e2fsck,kernel'))
    .option('--filter <text>', 'only cases whose id contains one of these (repeatable)', collect)
    .option('--no-snapshot', 'boot every workload VM instead of restoring the saved agent-ready state')
    .addOption(new Option('--format <fmt>', 'what to print on stdout').choices(['text', 'markdown', 'tap', 'junit', 'json', 'kcidb', 'none']).default('text'))
    .action(async (inputs: string[], o: { kernel: string; jobs: number; seed?: number; out?: string; keep: 'failed' | 'all' | 'none'; resume?: string; recovery?: string; filter?: string[]; format: string; snapshot: boolean }) => {
      const reporters: Reporter[] = [new ProgressReporter()];
      if (o.format === 'tap') reporters.push(new TapReporter(process.stdout));
      const recovery = o.recovery ? parseRecovery(o.recovery) : undefined;
      const { summary, dir } = await runSuite({
        inputs,
        kernel: o.kernel,
        jobs: o.jobs,
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...(o.out ? { out: o.out } : {}),
        keep: o.keep,
        ...(o.resume ? { resume: o.resume } : {}),
        ...(recovery ? { recovery } : {}),
        ...(o.filter ? { filter: o.filter } : {}),
        snapshots: o.snapshot,
        reporters,
      });
      if (o.format === 'text' || o.format === 'markdown') process.stdout.write(textReport(summary, { markdown: o.format === 'markdown' }));
      else if (o.format === 'junit') process.stdout.write(junitDocument(summary));
      else if (o.format === 'json') process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else if (o.format === 'kcidb') process.stdout.write(JSON.stringify(kcidbDocument(summary), null, 2) + '\n');
      process.stderr.write(`qcrash: results in ${dir}\n`);
      process.exitCode = exitCodeFor(summary);
    });
}

export function parseRecovery(v: string): RecoveryMode[] {
  const modes = v.split(',').map((x) => x.trim());
  for (const m of modes) if (m !== 'e2fsck' && m !== 'kernel') throw new ConfigError(`--recovery: unknown mode "${m}" (e2fsck, kernel)`);
  return modes as RecoveryMode[];
}
