import type { Command } from 'commander';
import { checkImage, findingsSummary } from '../run/check-image.ts';
import { isAllowed, defaultAllowance } from '../findings/finding.ts';
import { ExitCode } from '../util/errors.ts';
import { returnsExitCode } from './exit-code.ts';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description(
      'run the oracles (e2fsck problem log, content against a manifest) on an ext4 image you bring; the image is not modified',
    )
    .argument('<image>', 'raw ext4 image')
    .option('--manifest <file>', 'manifest.json of the recipe the image was made from (enables the content oracle)')
    .option('--json', 'print findings as JSON')
    .action(
      returnsExitCode(async (image: string, o: { manifest?: string; json?: boolean }) => {
        const r = await checkImage(image, o.manifest ? { manifestFile: o.manifest } : {});
        process.stdout.write(o.json ? JSON.stringify(r.findings, null, 2) + '\n' : findingsSummary(r.findings) + '\n');
        return r.findings.some((f) => !isAllowed(f, defaultAllowance)) ? ExitCode.failed : ExitCode.pass;
      }),
    );
}
