import { execFileSync } from 'node:child_process';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runSuite } from '../../harness/run/runner.ts';
import { stockKernel } from '../../harness/kernel/stock.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';
import type { CaseSpec } from '../../harness/scenario/model.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import { HtmlReportReporter } from '../../harness/report/html/run-report.ts';

/**
 * Real runs for the HTML report tests: the stock kernel, the small-4k
 * recipe, e2fsck recovery only, three cases in two scenarios. Failures are
 * planted by damaging a case's crash image with debugfs through the case
 * runner's `beforeOracle` seam, so every finding in the pages went through
 * the real recovery and oracles:
 *
 * - `freeb`: one data block of /shapes/ind-13 marked free in the bitmap;
 *   e2fsck says "+" block bitmap difference (0x050005, corruption). Only on
 *   cases whose journal is clean (no-kill, after-umount): a journal replay
 *   could rewrite the bitmap block and undo it.
 * - `zap`: the first data block of /shapes/direct-12 overwritten; data
 *   blocks are not journaled, so it survives any replay and the content
 *   oracle reports the changed bytes (data).
 */
export type Damage = 'freeb' | 'zap';
export type DamagePlan = Record<string, Damage[]>;

const steps = `steps:
  - mount: [commit=5]
  - migrate: { paths: [/shapes/direct-12, /shapes/ind-13, /shapes/dind-first, /shapes/sparse-middle, /shapes/fragmented] }
  - sync
  - umount
recovery: [e2fsck]
`;

export const scenarioTexts = {
  'html-clean': `description: Migrate every shape, sync, umount; then a clean power-off or a kill right after umount.\nrecipe: small-4k\n${steps}kill:\n  - none\n  - after: umount\n`,
  'html-kill': `description: Migrate every shape; kill 30 ms into the migration, or at the second call of ext4_ext_migrate (gdbstub).\nrecipe: small-4k\n${steps}kill:\n  - delay: { step: migrate, ms: 30 }\n  - kernel: { step: migrate, symbol: ext4_ext_migrate, hit: 2 }\n`,
};

/** Case ids of the scenarios above (seed-independent). */
export const caseIds = {
  noKill: 'html-clean/no-kill/r1',
  afterUmount: 'html-clean/after-umount/r1',
  delay: 'html-kill/delay-migrate-30ms/r1',
  kernel: 'html-kill/kernel-migrate-ext4_ext_migrate-hit2/r1',
};

export async function writeScenarios(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (const [name, text] of Object.entries(scenarioTexts)) {
    const f = join(dir, `${name}.yaml`);
    await writeFile(f, text);
    files.push(f);
  }
  return files;
}

function damage(image: string, kind: Damage): void {
  if (kind === 'freeb') {
    const stat = execFileSync('debugfs', ['-R', 'stat /shapes/ind-13', image], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const blk = /\((?:0|0-\d+)\):(\d+)/.exec(stat)?.[1];
    if (!blk) throw new Error(`no data block of /shapes/ind-13 in debugfs stat:\n${stat}`);
    execFileSync('debugfs', ['-w', '-R', `freeb ${blk}`, image], { stdio: 'ignore' });
  } else {
    execFileSync('debugfs', ['-w', '-R', 'zap_block -f /shapes/direct-12 -p 0x55 0', image], { stdio: 'ignore' });
  }
}

export interface RealRun {
  dir: string;
  summary: RunSummary;
}

let kernel: KernelInfo | undefined;

/** One real run of `scenarios` with the planted damage per case id; report.html comes from the run's HTML reporter. */
export async function realRun(
  scenarios: string[],
  out: string,
  plan: DamagePlan,
  opts: { filter?: string[]; seed?: number } = {},
): Promise<RealRun> {
  kernel ??= await stockKernel();
  const { summary, dir } = await runSuite({
    inputs: scenarios,
    kernel,
    seed: opts.seed ?? 11,
    out,
    jobs: 2,
    keep: 'failed',
    recovery: ['e2fsck'],
    ...(opts.filter ? { filter: opts.filter } : {}),
    reporters: [new HtmlReportReporter()],
    beforeOracle: async (image: string, spec: CaseSpec) => {
      for (const d of plan[spec.id] ?? []) damage(image, d);
    },
  });
  return { dir, summary };
}
