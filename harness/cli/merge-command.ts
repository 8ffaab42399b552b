import { Option, type Command } from 'commander';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { mergeShards } from '../run/merge.ts';
import { exitCodeFor } from '../results/verdict.ts';
import { stdoutDocument, stdoutFormats, type StdoutFormat } from '../report/stdout.ts';
import { mergeValidateShards, validateReport } from '../validate/validate.ts';
import { ConfigError, ExitCode } from '../util/errors.ts';
import { returnsExitCode } from './exit-code.ts';

async function isValidateFolder(dir: string): Promise<boolean> {
  return access(join(dir, 'validate-shard.json')).then(
    () => true,
    () => false,
  );
}

export function registerMerge(program: Command): void {
  program
    .command('merge')
    .description(
      "join the shards of a sharded run (qcrash run --shard I/N, or validate --shard) into one run in OUT, with every report; exit codes as run's (or validate's)",
    )
    .argument('<out>', 'folder for the merged run (must not hold a run)')
    .argument('<shardDirs...>', "the shards' result folders, one per shard")
    .addOption(new Option('--format <fmt>', 'what to print on stdout').choices([...stdoutFormats]).default('text'))
    .action(
      returnsExitCode(async (out: string, dirs: string[], o: { format: StdoutFormat }) => {
        const kinds = await Promise.all(dirs.map(isValidateFolder));
        if (kinds.some(Boolean)) {
          if (!kinds.every(Boolean))
            throw new ConfigError(
              `merge: ${dirs.filter((_, i) => !kinds[i]).join(', ')} ${kinds.filter((k) => !k).length > 1 ? 'are' : 'is'} not a validate shard, unlike ${dirs.filter((_, i) => kinds[i]).join(', ')}: merge validate shards with validate shards and run shards with run shards`,
            );
          const r = await mergeValidateShards({ out, dirs });
          for (const w of r.warnings) process.stderr.write(`qcrash: warning: ${w}\n`);
          for (const p of r.problems) process.stderr.write(`qcrash: merge: ${p}\n`);
          process.stdout.write(validateReport(r.result));
          process.stderr.write(`qcrash: merged validate results in ${r.result.dir}\n`);
          return r.exitCode;
        }
        const r = await mergeShards({ out, dirs });
        for (const w of r.warnings) process.stderr.write(`qcrash: warning: ${w}\n`);
        for (const p of r.problems) process.stderr.write(`qcrash: merge: ${p}\n`);
        process.stdout.write(stdoutDocument(o.format, r.summary));
        const m = r.summary.merged!;
        process.stderr.write(
          `qcrash: merged ${m.shards.length} of ${m.total} shard(s), ${r.summary.counts.total} case(s), into ${r.dir}\n`,
        );
        const code = exitCodeFor(r.summary);
        if (r.reporterFailures.length && code === ExitCode.pass) {
          process.stderr.write(
            `qcrash: ${r.reporterFailures.map((f) => `${f.reporter} output missing (${f.error})`).join('; ')}\n`,
          );
          return ExitCode.infrastructure;
        }
        return code;
      }),
    );
}
