import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.ts';
import type { RunSummary } from '../results/run.ts';
import type { Reporter } from './reporter.ts';
import { tapDocument } from './tap.ts';
import { junitDocument } from './junit.ts';
import { textReport } from './text.ts';

/**
 * The machine-readable files every run folder has besides summary.json
 * (which the store writes): results.tap for prove and TAP consumers,
 * junit.xml for CI systems, report.txt for a mail. Written atomically.
 */
export class RunFilesReporter implements Reporter {
  readonly name = 'files';

  async onRunEnd(summary: RunSummary, dir: string): Promise<void> {
    await writeFileAtomic(join(dir, 'results.tap'), tapDocument(summary));
    await writeFileAtomic(join(dir, 'junit.xml'), junitDocument(summary));
    await writeFileAtomic(join(dir, 'report.txt'), textReport(summary));
  }
}
