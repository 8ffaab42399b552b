import type { Command } from 'commander';
import { signalIsTheCause } from '../util/cleanup.ts';
import { nightly, nightlyReport } from '../nightly/nightly.ts';
import { loadSummary } from '../results/store.ts';
import { ProgressReporter } from '../report/progress.ts';
import { streamProgressSink } from '../kernel/build-progress.ts';
import { defaultResultsDir } from '../util/paths.ts';
import { collect, intArg, parseRecovery, maxCasesArg, maxCasesHelp } from './run-command.ts';
import { returnsExitCode } from './exit-code.ts';
import { kernelLine } from '../kernel/lines.ts';

export function registerNightly(program: Command): void {
  program
    .command('nightly')
    .description(
      "build a branch's head (fetching nothing), run the suite, compare with the branch's last night in the history; exit 1 only on findings new since last night that come back on a rerun",
    )
    .argument('[scenarios...]', 'scenario files or directories (default: scenarios/)')
    .requiredOption('--tree <dir>', 'kernel git tree (already fetched)')
    .requiredOption('--branch <ref>', 'the branch (or any ref) of --tree to follow; the history keys nights by this name')
    .option('--history <dir>', 'folder of the nights and their index (history.json, history.html)', defaultResultsDir)
    .option(
      '--line <line>',
      'kernel line (6.1 or 6.12) whose config fragments to use (kernels/configs/<line>/ before kernels/configs/)',
      (v: string) => kernelLine(v).name,
    )
    .option('--config <frag>', 'config fragments (default: kernels/configs/minimal.config) (repeatable)', collect)
    .option('--seed <n>', 'seed (the same every night, so nights compare)', intArg('--seed'), 1)
    .option('-j, --jobs <n>', 'VMs at once', intArg('--jobs', 1))
    .option('--confirm <n>', 'reruns of a new finding before it fails the night', intArg('--confirm', 1), 1)
    .option('--recovery <modes>', 'override recovery modes: e2fsck, kernel or e2fsck,kernel')
    .option('--max-cases <n>', maxCasesHelp, maxCasesArg)
    .action(returnsExitCode(signalIsTheCause(runNightly)));
}

interface NightlyCommandOptions {
  tree: string;
  branch: string;
  history: string;
  line?: string;
  config?: string[];
  seed: number;
  jobs?: number;
  confirm: number;
  recovery?: string;
}

async function runNightly(scenarios: string[], o: NightlyCommandOptions): Promise<number> {
  const r = await nightly({
    tree: o.tree,
    branch: o.branch,
    history: o.history,
    scenarios,
    seed: o.seed,
    confirmRuns: o.confirm,
    ...(o.line ? { line: o.line } : {}),
    ...(o.config ? { configs: o.config } : {}),
    ...(o.jobs ? { jobs: o.jobs } : {}),
    ...(o.recovery ? { recovery: parseRecovery(o.recovery) } : {}),
    reporters: [new ProgressReporter()],
    onProgress: streamProgressSink(process.stderr, 'qcrash: '),
  });
  process.stdout.write(nightlyReport(r, await loadSummary(r.dir)));
  process.stderr.write(`qcrash: night in ${r.dir}; history in ${o.history}\n`);
  return r.exitCode;
}
