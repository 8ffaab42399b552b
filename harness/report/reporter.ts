import type { CaseSpec } from '../scenario/model.ts';
import type { CaseResult } from '../results/case.ts';
import type { RunMeta, RunSummary } from '../results/run.ts';

/**
 * Every output of a run is a reporter: an object of optional hooks (the
 * live progress line, TAP on stdout, the files in the run folder, the HTML
 * page). The runner only knows the multiplexer below.
 */
export interface Reporter {
  name: string;
  /** `cases` are the cases this run will run (`total` of them), for reporters that plan per scenario. */
  onRunStart?(meta: RunMeta, total: number, cases: readonly CaseSpec[]): void | Promise<void>;
  onCaseStart?(spec: CaseSpec): void | Promise<void>;
  /** A line about the run's progress outside any case (e.g. a write log recorded and its states planned). */
  onNote?(text: string): void | Promise<void>;
  onCaseEnd?(result: CaseResult): void | Promise<void>;
  /** `dir` is the run's results folder. */
  onRunEnd?(summary: RunSummary, dir: string): void | Promise<void>;
}

/**
 * Calls every reporter's hook in order; a reporter that throws is reported
 * once on stderr and skipped from then on, so one broken reporter cannot
 * lose the others' output or the run's results. `failed` names them, so the
 * run cannot end green with an output missing.
 */
export class ReporterHub {
  private readonly broken = new Map<string, string>();
  constructor(private readonly reporters: Reporter[]) {}

  get failed(): Array<{ reporter: string; error: string }> {
    return [...this.broken].map(([reporter, error]) => ({ reporter, error }));
  }

  private async call<K extends Exclude<keyof Reporter, 'name'>>(
    hook: K,
    ...args: Parameters<NonNullable<Reporter[K]>>
  ): Promise<void> {
    for (const r of this.reporters) {
      if (this.broken.has(r.name)) continue;
      const fn = r[hook] as ((...a: unknown[]) => unknown) | undefined;
      if (!fn) continue;
      try {
        await fn.apply(r, args);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        this.broken.set(r.name, `${hook}: ${msg}`);
        process.stderr.write(`qcrash: reporter ${r.name} failed in ${hook} and is disabled: ${msg}\n`);
      }
    }
  }

  onRunStart(meta: RunMeta, total: number, cases: readonly CaseSpec[]) {
    return this.call('onRunStart', meta, total, cases);
  }
  onCaseStart(spec: CaseSpec) {
    return this.call('onCaseStart', spec);
  }
  onCaseEnd(result: CaseResult) {
    return this.call('onCaseEnd', result);
  }
  onNote(text: string) {
    return this.call('onNote', text);
  }
  onRunEnd(summary: RunSummary, dir: string) {
    return this.call('onRunEnd', summary, dir);
  }
}
