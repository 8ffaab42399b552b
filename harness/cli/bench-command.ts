import type { Command } from 'commander';
import { runBench, formatBench } from '../bench/bench.ts';
import { intArg } from './run-command.ts';

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('measure crash states per minute in one run: the naive boot-per-case loop, qcrash kill cases, and write-log states (the fstests loop against the incremental replay); writes JSON')
    .option('--cases <n>', 'crash cases per side', intArg('--cases', 1), 24)
    .option('-j, --jobs <n>', 'VMs at once for qcrash', intArg('--jobs', 1))
    .option('-o, --out <file>', 'JSON output (default results/bench-<date>.json)')
    .option('--no-writelog', 'leave out the write-log paths (recording two logs and checking about 1100 states takes the longest)')
    .action(async (o: { cases: number; jobs?: number; out?: string; writelog: boolean }) => {
      const r = await runBench({ cases: o.cases, ...(o.jobs ? { jobs: o.jobs } : {}), ...(o.out ? { out: o.out } : {}), writelog: o.writelog, onProgress: (line) => process.stderr.write(`qcrash bench: ${line}\n`) });
      process.stdout.write(formatBench(r));
    });
}
