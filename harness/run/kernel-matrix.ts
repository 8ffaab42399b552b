import { join } from 'node:path';
import { defaultResultsDir } from '../util/paths.ts';
import { newRunId } from '../results/store.ts';
import { stockLineOf } from '../kernel/lines.ts';
import { buildMatrix, type Matrix, type MatrixRun } from '../report/matrix.ts';
import { writeMatrixReports } from '../report/matrix-reports.ts';
import { runSuite, type RunOutcome, type SuiteOptions } from './runner.ts';

/** The folder of one kernel's run in a matrix run: its --kernel spec, made a file name ("stock:6.12" is "stock-6.12"). */
export function kernelFolder(spec: string): string {
  return (stockLineOf(spec)?.stockSpec ?? spec).replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+/, '');
}

export interface MatrixOutcome {
  dir: string;
  runs: Array<MatrixRun & { outcome: RunOutcome }>;
  matrix: Matrix;
}

/**
 * The same suite on several kernels, one after the other: each kernel's
 * run is a whole run folder of its own (<dir>/<kernel>/, so case ids stay
 * those of a one-kernel run and compare, history, merge and --resume work
 * on it unchanged, never mixing kernels), then the kernel x scenario
 * matrix beside them (matrix.txt, .json, .html, -junit.xml, -kcidb.json). A kill point one kernel
 * lacks leaves that kernel's cases not judged; the other kernels run on.
 */
export async function runKernelMatrix(
  opts: Omit<SuiteOptions, 'kernel' | 'out' | 'resume'> & { kernels: string[]; out?: string },
): Promise<MatrixOutcome> {
  const dir = opts.out ?? join(defaultResultsDir, `matrix-${newRunId()}`);
  const runs: MatrixOutcome['runs'] = [];
  // One seed for every kernel: the same cases with the same inputs, so the columns compare.
  const seed = opts.seed ?? Math.floor(Math.random() * 1e9);
  for (const spec of opts.kernels) {
    const label = kernelFolder(spec);
    const outcome = await runSuite({ ...opts, seed, kernel: spec, out: join(dir, label), missingSymbols: 'not-judged' });
    runs.push({ label, dir: outcome.dir, summary: outcome.summary, outcome });
  }
  const matrix = buildMatrix(runs);
  await writeMatrixReports(dir, matrix, runs);
  return { dir, runs, matrix };
}
