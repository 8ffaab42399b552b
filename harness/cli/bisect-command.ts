import type { Command } from 'commander';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import {
  bisect,
  bisectStep,
  combineStepReports,
  formatBisect,
  parseStepReports,
  type BisectStepReport,
} from '../bisect/bisect.ts';
import { ConfigError, QcrashError } from '../util/errors.ts';
import { collect, intArg } from './run-command.ts';
import { parseShardSpec, type ShardSpec } from '../run/shard.ts';
import { returnsExitCode } from './exit-code.ts';
import { kernelLine } from '../kernel/lines.ts';

/** What revisionRunOptions adds to a command's options. */
interface RevisionRunOptions {
  finding?: string;
  retries: number;
  line?: string;
  config?: string[];
  seed: number;
  jobs?: number;
  out?: string;
}

interface BisectOptions extends RevisionRunOptions {
  tree: string;
  good: string;
  bad: string;
}

interface BisectStepOptions extends RevisionRunOptions {
  tree: string;
  shard?: ShardSpec;
}

/** The options bisect and bisect-step share to judge a revision; each command words their help for itself. */
function revisionRunOptions(cmd: Command, help: { finding: string; retries: string; config: string; out: string }): Command {
  return cmd
    .option('--finding <signature>', help.finding)
    .option('--retries <n>', help.retries, intArg('--retries', 1), 1)
    .option(
      '--line <line>',
      'kernel line (6.1 or 6.12) whose config fragments to use (kernels/configs/<line>/ before kernels/configs/)',
      (v: string) => kernelLine(v).name,
    )
    .option('--config <frag>', help.config, collect)
    .option('--seed <n>', 'seed', intArg('--seed'), 1)
    .option('-j, --jobs <n>', 'VMs at once', intArg('--jobs', 1))
    .option('--out <dir>', help.out);
}

export function registerBisect(program: Command): void {
  const bisectCommand = program
    .command('bisect')
    .description('find the commit that introduced a finding: verifies both ends, then git bisect run with qcrash bisect-step')
    .argument('<scenarios...>', 'scenario files or directories whose cases show the finding')
    .requiredOption('--tree <dir>', 'kernel git tree')
    .requiredOption('--good <rev>', 'a revision without the finding')
    .requiredOption('--bad <rev>', 'a revision with the finding');
  revisionRunOptions(bisectCommand, {
    finding: 'substring of the finding signature (scenario | point | recovery | class | code)',
    retries: 'runs per revision; a finding on any of them is present (reported flaky if not on all)',
    config: 'config fragments (default: kernels/configs/minimal.config) (repeatable)',
    out: "keep each tested revision's run under this folder (default: results/)",
  }).action(runBisect);

  const stepCommand = program
    .command('bisect-step')
    .description('for git bisect run: build the checked-out revision, run the cases; exit 0 good, 1 bad, 125 skip')
    .argument('<scenarios...>', 'scenario files or directories')
    .option('--tree <dir>', 'kernel git tree (default: the current directory)', '.');
  revisionRunOptions(stepCommand, {
    finding: 'substring of the finding signature that marks a revision bad',
    retries: 'runs per revision',
    config: 'config fragments (repeatable)',
    out: 'keep the run under this folder (default: results/)',
  })
    .option(
      '--shard <I/N>',
      "judge only the I-th of N parts of the cases (one machine of several); join the parts' lines with qcrash bisect-combine",
      parseShardSpec,
    )
    .action(returnsExitCode(runBisectStep));
}

async function runBisect(scenarios: string[], o: BisectOptions): Promise<void> {
  const r = await bisect({
    ...o,
    scenarios,
    ...(o.config ? { configs: o.config } : {}),
    onProgress: (l) => process.stderr.write(`qcrash: ${l}\n`),
  });
  process.stdout.write(formatBisect(r));
}

/** The commit checked out in `tree`, or '' when there is none to name. */
function headCommit(tree: string): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd: tree,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    /* reported by the step itself */
    return '';
  }
}

/** One JSON line on stdout for qcrash bisect (and scripts); a line for people on stderr. */
function reportStep(head: string, v: Omit<BisectStepReport, 'qcrash' | 'commit'>): void {
  process.stdout.write(`${JSON.stringify({ qcrash: 'bisect-step', commit: head, ...v })}\n`);
  process.stderr.write(
    `qcrash bisect-step: ${head.slice(0, 12)}${v.shard ? ` shard ${v.shard.index}/${v.shard.total}` : ''} ${v.verdict} ${v.seconds}s: ${v.reason}${v.flaky ? ' (flaky)' : ''}\n`,
  );
}

async function runBisectStep(scenarios: string[], o: BisectStepOptions): Promise<number> {
  const head = headCommit(o.tree);
  try {
    const { ms, ...v } = await bisectStep({ ...o, scenarios, ...(o.config ? { configs: o.config } : {}) });
    reportStep(head, { ...v, seconds: Math.round(ms / 1000) });
    return v.exitCode;
  } catch (e) {
    // Under git bisect run anything that stops a revision from being judged is a skip, never good or bad.
    reportStep(head, {
      verdict: 'skip',
      exitCode: 125,
      reason: e instanceof Error ? e.message.split('\n')[0]! : String(e),
      seconds: 0,
    });
    if (e instanceof QcrashError && e.exitCode === 2 && !head) throw e;
    return 125;
  }
}

export function registerBisectCombine(program: Command): void {
  program
    .command('bisect-combine')
    .description(
      "for git bisect run over several machines: one verdict on a revision from its shards' bisect-step --shard lines (exit 1 if any part found it, 0 only if every part ran clean, else 125)",
    )
    .argument('<files...>', "files holding what each shard's bisect-step printed on stdout")
    .action(
      returnsExitCode(async (files: string[]) => {
        try {
          const reports: BisectStepReport[] = [];
          for (const f of files) {
            const text = await readFile(f, 'utf8').catch(() => {
              throw new ConfigError(`bisect-combine: cannot read ${f}`);
            });
            const found = parseStepReports(text);
            if (!found.length) throw new ConfigError(`bisect-combine: ${f} holds no bisect-step line`);
            reports.push(...found);
          }
          const v = combineStepReports(reports);
          process.stdout.write(`${JSON.stringify(v)}\n`);
          process.stderr.write(
            `qcrash bisect-combine: ${v.commit.slice(0, 12)} ${v.verdict}: ${v.reason}${v.flaky ? ' (flaky)' : ''}\n`,
          );
          return v.exitCode;
        } catch (e) {
          // Under git bisect run any other exit code would be taken as "bad".
          process.stderr.write(`qcrash bisect-combine: skip: ${e instanceof Error ? e.message : String(e)}\n`);
          return 125;
        }
      }),
    );
}
