import type { Command } from 'commander';
import { resolve } from 'node:path';
import { writeHistoryReport } from '../report/html/history-report.ts';
import { defaultResultsDir } from '../util/paths.ts';
import { intArg } from './run-command.ts';

export function registerHistory(program: Command): void {
  program
    .command('history')
    .description(
      'update RESULTS_DIR/history.json from the run folders in it and write RESULTS_DIR/history.html (verdicts per scenario over runs, findings that appeared or went away, flaky signatures)',
    )
    .argument('[resultsDir]', 'folder whose subfolders are runs', defaultResultsDir)
    .option('--max-runs <n>', 'runs shown in the page (the index keeps all)', intArg('--max-runs', 1), 30)
    .action(async (dir: string, o: { maxRuns: number }) => {
      const r = await writeHistoryReport(resolve(dir), { maxRuns: o.maxRuns });
      process.stderr.write(
        `qcrash: ${r.runs} run(s) in the history, ${r.added.length} new${r.added.length ? `: ${r.added.join(', ')}` : ''}\n`,
      );
      process.stdout.write(`${r.html}\n`);
    });
}
