import type { CaseSpec } from '../scenario/model.ts';
import type { CaseResult, RunSummary } from '../run/result.ts';
import type { RunMeta } from '../run/store.ts';

/** A reporter is an object of optional hooks; the runner never knows which ones exist. */
export interface Reporter {
  name: string;
  /** `cases` are the cases this run will run (`total` of them), for reporters that plan per scenario. */
  onRunStart?(meta: RunMeta, total: number, cases: readonly CaseSpec[]): void | Promise<void>;
  onCaseStart?(spec: CaseSpec): void | Promise<void>;
  onCaseEnd?(result: CaseResult): void | Promise<void>;
  onRunEnd?(summary: RunSummary): void | Promise<void>;
}

/**
 * Calls every reporter's hook; a reporter that throws is reported once on
 * stderr and skipped from then on, so one broken reporter cannot lose the
 * others' output or the run's results.
 */
export class ReporterHub {
  private broken = new Set<string>();
  constructor(private readonly reporters: Reporter[]) {}

  private async call<K extends Exclude<keyof Reporter, 'name'>>(hook: K, ...args: Parameters<NonNullable<Reporter[K]>>): Promise<void> {
    for (const r of this.reporters) {
      if (this.broken.has(r.name)) continue;
      const fn = r[hook] as ((...a: unknown[]) => unknown) | undefined;
      if (!fn) continue;
      try {
        await fn.apply(r, args);
      } catch (e) {
        this.broken.add(r.name);
        process.stderr.write(`qcrash: reporter ${r.name} failed in ${hook} and is disabled: ${e instanceof Error ? e.message : String(e)}\n`);
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
  onRunEnd(summary: RunSummary) {
    return this.call('onRunEnd', summary);
  }
}
