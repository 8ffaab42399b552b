import type { RunSummary } from '../results/run.ts';

/** The run as one JSON document: summary.json's content, for `--format json`. */
export function jsonDocument(s: RunSummary): string {
  return JSON.stringify(s, null, 2) + '\n';
}
