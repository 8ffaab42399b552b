import type { CaseSpec } from '../scenario/model.ts';
import type { CaseResult } from '../results/case.ts';
import type { RunMeta, RunSummary } from '../results/run.ts';
import type { Reporter } from './reporter.ts';
import { Tap13Reporter, tap13Document } from './tap13.ts';
import { Tap14Reporter, tap14Document } from './tap.ts';
import { KtapReporter, ktapDocument } from './ktap.ts';
import { junitDocument } from './junit.ts';
import { textReport } from './text.ts';
import { jsonDocument } from './json.ts';
import { kcidbDocument } from './kcidb.ts';

/**
 * tap is TAP 13 (what prove and most CI plugins read), tap14 TAP version 14,
 * ktap KTAP version 1 (kunit.py, KernelCI), kcidb the run as KCIDB report
 * data for a KernelCI-style dashboard.
 */
export const stdoutFormats = ['text', 'markdown', 'tap', 'tap14', 'ktap', 'junit', 'json', 'kcidb', 'none'] as const;
export type StdoutFormat = (typeof stdoutFormats)[number];

/**
 * What `--format` puts on stdout (progress goes to stderr, so stdout stays
 * a clean stream for prove, a KTAP parser, a CI parser or a mail): the
 * streaming formats write as cases finish; the others once the run has ended.
 */
export class StdoutReporter implements Reporter {
  readonly name: string;
  private readonly stream?: Reporter;

  constructor(
    private readonly format: StdoutFormat,
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {
    this.name = `stdout-${format}`;
    if (format === 'tap') this.stream = new Tap13Reporter(out);
    else if (format === 'tap14') this.stream = new Tap14Reporter(out);
    else if (format === 'ktap') this.stream = new KtapReporter(out);
  }

  onRunStart(meta: RunMeta, total: number, cases: readonly CaseSpec[]) {
    return this.stream?.onRunStart?.(meta, total, cases);
  }

  onCaseEnd(r: CaseResult) {
    return this.stream?.onCaseEnd?.(r);
  }

  onRunEnd(s: RunSummary, dir: string) {
    if (this.stream) return this.stream.onRunEnd?.(s, dir);
    if (this.format === 'text' || this.format === 'markdown')
      this.out.write(textReport(s, { markdown: this.format === 'markdown' }));
    else if (this.format === 'junit') this.out.write(junitDocument(s));
    else if (this.format === 'json') this.out.write(jsonDocument(s));
    else if (this.format === 'kcidb') this.out.write(JSON.stringify(kcidbDocument(s), null, 2) + '\n');
  }
}

/**
 * The same formats for a run that is already complete (a merged one): the
 * whole document at once instead of a stream. Empty for `none`.
 */
export function stdoutDocument(format: StdoutFormat, s: RunSummary): string {
  switch (format) {
    case 'tap':
      return tap13Document(s);
    case 'tap14':
      return tap14Document(s);
    case 'ktap':
      return ktapDocument(s);
    case 'text':
    case 'markdown':
      return textReport(s, { markdown: format === 'markdown' });
    case 'junit':
      return junitDocument(s);
    case 'json':
      return jsonDocument(s);
    case 'kcidb':
      return JSON.stringify(kcidbDocument(s), null, 2) + '\n';
    case 'none':
      return '';
  }
}
