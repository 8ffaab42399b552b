import type { Command } from 'commander';
import { execFileSync } from 'node:child_process';
import { bisect, bisectStep, formatBisect, type StepReport } from '../bisect/bisect.ts';
import { QcrashError } from '../util/errors.ts';
import { collect, intArg } from './run-command.ts';

export function registerBisect(program: Command): void {
  program
    .command('bisect')
    .description('find the commit that introduced a finding: verifies both ends, then git bisect run with qcrash bisect-step')
    .argument('<scenarios...>', 'scenario files or directories whose cases show the finding')
    .requiredOption('--tree <dir>', 'kernel git tree')
    .requiredOption('--good <rev>', 'a revision without the finding')
    .requiredOption('--bad <rev>', 'a revision with the finding')
    .option('--finding <signature>', 'substring of the finding signature (scenario | point | recovery | class | code)')
    .option('--retries <n>', 'runs per revision; a finding on any of them is present (reported flaky if not on all)', intArg('--retries', 1), 1)
    .option('--config <frag>', 'config fragments (default: kernels/configs/minimal.config) (repeatable)', collect)
    .option('--seed <n>', 'seed', intArg('--seed'), 1)
    .option('-j, --jobs <n>', 'VMs at once', intArg('--jobs', 1))
    .option('--out <dir>', 'keep each tested revision\'s run under this folder (default: results/)')
    .action(async (scenarios: string[], o: { tree: string; good: string; bad: string; finding?: string; retries: number; config?: string[]; seed: number; jobs?: number; out?: string }) => {
      const r = await bisect({ ...o, scenarios, ...(o.config ? { configs: o.config } : {}), onProgress: (l) => process.stderr.write(`qcrash: ${l}\n`) });
      process.stdout.write(formatBisect(r));
    });

  program
    .command('bisect-step')
    .description('for git bisect run: build the checked-out revision, run the cases; exit 0 good, 1 bad, 125 skip')
    .argument('<scenarios...>', 'scenario files or directories')
    .option('--tree <dir>', 'kernel git tree (default: the current directory)', '.')
    .option('--finding <signature>', 'substring of the finding signature that marks a revision bad')
    .option('--retries <n>', 'runs per revision', intArg('--retries', 1), 1)
    .option('--config <frag>', 'config fragments (repeatable)', collect)
    .option('--seed <n>', 'seed', intArg('--seed'), 1)
    .option('-j, --jobs <n>', 'VMs at once', intArg('--jobs', 1))
    .option('--out <dir>', 'keep the run under this folder (default: results/)')
    .action(async (scenarios: string[], o: { tree: string; finding?: string; retries: number; config?: string[]; seed: number; jobs?: number; out?: string }) => {
      let head = '';
      try {
        head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: o.tree, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      } catch {
        /* reported by the step itself */
      }
      const report = (v: Omit<StepReport, 'qcrash' | 'commit'>) => {
        // One JSON line on stdout for qcrash bisect (and scripts); a line for people on stderr.
        process.stdout.write(`${JSON.stringify({ qcrash: 'bisect-step', commit: head, ...v })}\n`);
        process.stderr.write(`qcrash bisect-step: ${head.slice(0, 12)} ${v.verdict} ${v.seconds}s: ${v.reason}${v.flaky ? ' (flaky)' : ''}\n`);
      };
      try {
        const { ms, ...v } = await bisectStep({ ...o, scenarios, ...(o.config ? { configs: o.config } : {}) });
        report({ ...v, seconds: Math.round(ms / 1000) });
        process.exitCode = v.exitCode;
      } catch (e) {
        // Under git bisect run anything that stops a revision from being judged is a skip, never good or bad.
        report({ verdict: 'skip', exitCode: 125, reason: e instanceof Error ? e.message.split('\n')[0]! : String(e), seconds: 0 });
        if (e instanceof QcrashError && e.exitCode === 2 && !head) throw e;
        process.exitCode = 125;
      }
    });
}
