import type { CaseResult } from '../results/case.ts';
import type { RunMeta } from '../results/run.ts';
import type { Reporter } from './reporter.ts';

/**
 * Live progress on stderr (so it never mixes with TAP on stdout): one
 * updating line on a terminal, one plain line per case otherwise.
 */
export class ProgressReporter implements Reporter {
  readonly name = 'progress';
  private total = 0;
  private done = 0;
  private failing = 0;
  private started = 0;
  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  onRunStart(meta: RunMeta, total: number) {
    this.total = total;
    this.done = 0;
    this.failing = 0;
    this.started = performance.now();
    this.out.write(`qcrash: run ${meta.runId}: ${total} case(s) on ${meta.kernel.release} (${meta.accel})\n`);
  }

  onNote(text: string) {
    this.out.write(`qcrash: ${text}\n`);
  }

  onCaseEnd(r: CaseResult) {
    this.done++;
    if (r.status !== 'pass') this.failing++;
    const elapsed = performance.now() - this.started;
    const eta = this.done ? ((elapsed / this.done) * (this.total - this.done)) / 1000 : 0;
    if (this.out.isTTY) {
      const line = `[${this.done}/${this.total}] ${this.failing} failing, ETA ${Math.round(eta)}s  ${r.status === 'pass' ? '' : `${r.status.toUpperCase()} `}${r.id}`;
      this.out.write(`\r\x1b[K${line.slice(0, (this.out.columns ?? 100) - 1)}`);
      if (r.status !== 'pass') this.out.write('\n');
    } else {
      this.out.write(`[${this.done}/${this.total}] ${r.status.padEnd(11)} ${r.id} (${(r.durationMs / 1000).toFixed(1)}s)\n`);
    }
  }

  onRunEnd() {
    if (this.out.isTTY) this.out.write('\n');
  }
}
