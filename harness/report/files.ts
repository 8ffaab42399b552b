import type { RunSummary } from '../results/run.ts';
import type { Reporter } from './reporter.ts';
import { writeRunReports } from './run-files.ts';

/**
 * The machine-readable files every run folder has besides summary.json
 * (which the store writes): results.tap (TAP 13, what prove reads),
 * results.ktap, junit.xml for CI systems, report.txt for a mail. Written
 * atomically.
 */
export class RunFilesReporter implements Reporter {
  readonly name = 'files';

  async onRunEnd(summary: RunSummary, dir: string): Promise<void> {
    await writeRunReports(dir, summary);
  }
}
