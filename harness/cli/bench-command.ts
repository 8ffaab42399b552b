import type { Command } from 'commander';
import { runBench, formatBench } from '../bench/bench.ts';
import { intArg } from './run-command.ts';

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('measure crash cases per minute: the naive boot-per-case loop against qcrash, in one run; writes JSON')
    .option('--cases <n>', 'crash cases per side', intArg('--cases', 1), 24)
    .option('-j, --jobs <n>', 'VMs at once for qcrash', intArg('--jobs', 1))
    .option('-o, --out <file>', 'JSON output (default results/bench-<date>.json)')
    .action(async (o: { cases: number; jobs?: number; out?: string }) => {
      const r = await runBench({ cases: o.cases, ...(o.jobs ? { jobs: o.jobs } : {}), ...(o.out ? { out: o.out } : {}) });
      process.stdout.write(formatBench(r));
    });
}
