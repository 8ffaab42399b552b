import type { Command } from 'commander';
import { resolve } from 'node:path';
import { exportCrashImage } from '../results/crash-images.ts';

export function registerImage(program: Command): void {
  const image = program.command('image').description('crash images kept by runs');
  image
    .command('export')
    .description(
      "write a case's raw crash image (a run keeps it compressed as crash.qcow2 over its images/ folder); prints the file written",
    )
    .argument('<caseDir>', 'a case folder: RUN_DIR/cases/<scenario>/<point>/r<N>')
    .option('-o, --out <file>', 'where to write the raw image (default: CASE_DIR/crash.img)')
    .action(async (caseDir: string, o: { out?: string }) => {
      const file = await exportCrashImage(resolve(caseDir), ...(o.out ? [resolve(o.out)] : []));
      process.stdout.write(`${file}\n`);
    });
}
