import type { Command } from 'commander';
import { loadSummary } from '../results/store.ts';
import { compareRuns, comparisonExitCode, formatComparison } from '../compare/compare.ts';
import { ExitCode } from '../util/errors.ts';
import { returnsExitCode } from './exit-code.ts';

export function registerCompare(program: Command): void {
  program
    .command('compare')
    .description(
      'compare two runs by finding signature and case; exit 1 when B has new failing findings, a case got worse or is missing',
    )
    .argument('<runA>', 'older run directory')
    .argument('<runB>', 'newer run directory')
    .option('--all', 'compare allowed findings (leaks) too, not only failing ones')
    .option('--json', 'print the comparison as JSON')
    .option('--strict', 'also exit 1 when a case no longer reaches its crash point (lost coverage)')
    .action(
      returnsExitCode(async (a: string, b: string, o: { all?: boolean; json?: boolean; strict?: boolean }) => {
        const c = compareRuns(await loadSummary(a), await loadSummary(b), { failingOnly: !o.all });
        process.stdout.write(o.json ? JSON.stringify(c, null, 2) + '\n' : formatComparison(c));
        return comparisonExitCode(c, o.strict) ? ExitCode.failed : ExitCode.pass;
      }),
    );
}
