import type { Command } from 'commander';
import { resolve } from 'node:path';
import { writeRunReport } from '../report/html/run-report.ts';

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('write RUN_DIR/report.html: a self-contained HTML report of a run (open it in any browser, no server needed)')
    .argument('<runDir>', 'a run directory (results/<run-id>)')
    .action(async (dir: string) => {
      const file = await writeRunReport(resolve(dir));
      process.stdout.write(`${file}\n`);
    });
}
