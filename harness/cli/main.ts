import { Command, CommanderError, Option } from 'commander';
import { ExitCode, QcrashError, errorMessage } from '../util/errors.ts';
import { runAllCleanups } from '../util/cleanup.ts';
import { qcrashVersion } from '../util/version.ts';
import { commandExitCode } from './exit-code.ts';
import { registerDoctor } from './doctor-command.ts';
import { registerRun } from './run-command.ts';
import { registerCheck } from './check-command.ts';
import { registerCompare } from './compare-command.ts';
import { registerKernelCommands } from './kernel-commands.ts';
import { registerValidate } from './validate-command.ts';
import { registerBench } from './bench-command.ts';
import { registerBisect, registerBisectCombine } from './bisect-command.ts';
import { registerReport } from './report-command.ts';
import { registerHistory } from './history-command.ts';
import { registerCache } from './cache-command.ts';
import { registerMerge } from './merge-command.ts';
import { registerNightly } from './nightly-command.ts';
import { registerImage } from './image-command.ts';

/**
 * qcrash's command line. Each command lives in its own module and registers
 * itself here; this file turns what a command returns or throws into an exit
 * code: 0 pass, 1 a case failed, 2 usage/configuration, 3 infrastructure.
 * bin/qcrash.js exits with it.
 */
export function buildProgram(): Command {
  const program = new Command('qcrash')
    .description('Crash-test ext4 block-map-to-extent migration (chattr +e) in QEMU.')
    .version(qcrashVersion)
    .showHelpAfterError('(run qcrash --help for usage)')
    .exitOverride();
  registerRun(program);
  registerCheck(program);
  registerCompare(program);
  registerMerge(program);
  registerReport(program);
  registerHistory(program);
  registerNightly(program);
  registerValidate(program);
  registerKernelCommands(program);
  registerBench(program);
  registerBisect(program);
  registerBisectCombine(program);
  registerDoctor(program);
  registerCache(program);
  registerImage(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return commandExitCode(program);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit 0; every other commander error is a usage error.
      return e.exitCode === 0 ? 0 : ExitCode.usage;
    }
    if (e instanceof QcrashError) {
      process.stderr.write(`qcrash: ${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`qcrash: internal error: ${e instanceof Error ? (e.stack ?? e.message) : errorMessage(e)}\n`);
    return ExitCode.infrastructure;
  } finally {
    await runAllCleanups();
  }
}

export { Option };
