import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.ts';
import type { RunSummary } from '../results/run.ts';
import { tap13Document } from './tap13.ts';
import { ktapDocument } from './ktap.ts';
import { junitDocument } from './junit.ts';
import { textReport } from './text.ts';
import { fileReports, fileReportText } from '../results/file-report.ts';

/**
 * The reports written beside summary.json at the end of a run (and by
 * anything that rebuilds a summary): results.tap is TAP 13 because that is
 * what `prove` reads; results.ktap is for kunit.py-style and KernelCI tools.
 */
const runReportFiles = {
  'results.tap': tap13Document,
  'results.ktap': ktapDocument,
  'junit.xml': junitDocument,
  'report.txt': (s: RunSummary) => textReport(s),
} as const;

export async function writeRunReports(dir: string, summary: RunSummary): Promise<void> {
  for (const [file, render] of Object.entries(runReportFiles)) await writeFileAtomic(join(dir, file), render(summary));
  // A run on a user's image: every file's result (results/file-report.ts).
  const files = fileReports(summary);
  if (files.length) {
    await writeFileAtomic(join(dir, 'files.txt'), files.map(fileReportText).join('\n'));
    await writeFileAtomic(join(dir, 'files.json'), JSON.stringify(files, null, 2) + '\n');
  }
}
