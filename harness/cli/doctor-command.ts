import type { Command } from 'commander';
import { formatDoctor, installPackages, runDoctor } from '../doctor/doctor.ts';
import { ExitCode } from '../util/errors.ts';
import { returnsExitCode } from './exit-code.ts';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check the programs qcrash needs, with versions and the Debian package for each missing one')
    .option('--install', 'install missing Debian packages with apt-get (root only)')
    .option('--json', 'print the checks as JSON')
    .action(
      returnsExitCode(async (opts: { install?: boolean; json?: boolean }) => {
        let r = await runDoctor();
        if (opts.install && r.checks.some((c) => !c.ok)) {
          await installPackages();
          r = await runDoctor();
        }
        process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + '\n' : formatDoctor(r) + '\n');
        const missingForRun = r.checks.some((c) => !c.ok && c.neededFor === 'run');
        return missingForRun ? ExitCode.infrastructure : ExitCode.pass;
      }),
    );
}
