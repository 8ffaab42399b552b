import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.ts';
import type { RunSummary } from '../results/run.ts';
import { tap13Document } from './tap13.ts';
import { ktapDocument } from './ktap.ts';
import { junitDocument } from './junit.ts';
import { textReport } from './text.ts';

/**
 * The reports written beside summary.json at the end of a run (and by
 * anything that rebuilds a summary): results.tap is TAP 13 because that is
 * what `prove` reads; results.ktap is for kunit.py-style and KernelCI tools.
 */
export const runReportFiles = {
  'results.tap': tap13Document,
  'results.ktap': ktapDocument,
  'junit.xml': junitDocument,
  'report.txt': (s: RunSummary) => textReport(s),
} as const;

export async function writeRunReports(dir: string, summary: RunSummary): Promise<void> {
  for (const [file, render] of Object.entries(runReportFiles)) await writeFileAtomic(join(dir, file), render(summary));
}
