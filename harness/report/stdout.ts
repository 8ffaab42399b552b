import type { CaseResult } from '../results/case.ts';
import type { RunMeta, RunSummary } from '../results/run.ts';
import type { Reporter } from './reporter.ts';
import { TapReporter } from './tap.ts';
import { junitDocument } from './junit.ts';
import { textReport } from './text.ts';
import { jsonDocument } from './json.ts';

export const stdoutFormats = ['text', 'markdown', 'tap', 'junit', 'json', 'none'] as const;
export type StdoutFormat = (typeof stdoutFormats)[number];

/**
 * What `--format` puts on stdout (progress goes to stderr, so stdout stays
 * a clean stream for prove, a CI parser or a mail): TAP streams as cases
 * finish; the others are written once the run has ended.
 */
export class StdoutReporter implements Reporter {
  readonly name: string;
  private readonly tap?: TapReporter;

  constructor(
    private readonly format: StdoutFormat,
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {
    this.name = `stdout-${format}`;
    if (format === 'tap') this.tap = new TapReporter(out);
  }

  onRunStart(meta: RunMeta, total: number) {
    this.tap?.onRunStart(meta, total);
  }

  onCaseEnd(r: CaseResult) {
    this.tap?.onCaseEnd(r);
  }

  onRunEnd(s: RunSummary) {
    if (this.format === 'text' || this.format === 'markdown') this.out.write(textReport(s, { markdown: this.format === 'markdown' }));
    else if (this.format === 'junit') this.out.write(junitDocument(s));
    else if (this.format === 'json') this.out.write(jsonDocument(s));
  }
}
