import { returnsExitCode } from './exit-code.ts';
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { writeRunReport } from '../report/html/run-report.ts';
import { writeRunReports } from '../report/run-files.ts';
import { loadSummary } from '../results/store.ts';
import { progressLine } from '../results/plan.ts';
import { ExitCode } from '../util/errors.ts';

export function registerReport(program: Command): void {
  program
    .command('report')
    .description(
      "write RUN_DIR/report.html (a self-contained HTML report: open it in any browser, no server needed) and the run's other reports (report.txt, junit.xml, results.tap, results.ktap); exit 3 when the run was interrupted",
    )
    .argument('<runDir>', 'a run directory (results/<run-id>)')
    .action(
      returnsExitCode(async (dir: string) => {
        const runDir = resolve(dir);
        // An interrupted run has no reports yet, or ones from before it was resumed: all of them are written from its results now.
        const summary = await loadSummary(runDir);
        await writeRunReports(runDir, summary);
        const file = await writeRunReport(runDir, summary);
        process.stdout.write(`${file}\n`);
        if (summary.interrupted) {
          process.stderr.write(`qcrash: ${progressLine(summary.interrupted)}\n`);
          return ExitCode.infrastructure;
        }
        return ExitCode.pass;
      }),
    );
}
