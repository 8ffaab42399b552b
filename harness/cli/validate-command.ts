import type { Command } from 'commander';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { validatePatch, validateReport } from '../validate/validate.ts';
import { patchPassed, seriesReport, validateSeries } from '../validate/series.ts';
import { ProgressReporter } from '../report/progress.ts';
import { streamProgressSink } from '../kernel/build-progress.ts';
import { ExitCode, ConfigError } from '../util/errors.ts';
import { collect, intArg } from './run-command.ts';
import { parseShardSpec, type ShardSpec } from '../run/shard.ts';
import { returnsExitCode } from './exit-code.ts';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description(
      'build baseline and patched kernels, run the same cases on both, report what the patch (or, with --series, each patch of a series) changed (exit 1 if one introduced a finding)',
    )
    .argument('[scenarios...]', 'scenario files or directories (default: scenarios/)')
    .option('--patch <file>', 'patches to test, applied in order (repeatable); judged together unless --series', collect)
    .option(
      '--series',
      'judge each patch on its own: build the baseline and every prefix (1, 1-2, 1-3, ...), name the patch that introduced each finding; a --patch may be an mbox of several patches (git format-patch, b4 am), mails without a diff (cover letters) are skipped',
    )
    .option('--mutants <dir>', 'validate every *.patch in DIR, one at a time (e.g. ../shared/mutants)')
    .option('--tree <dir>', 'kernel git tree (default: Debian linux-source-6.1)')
    .option('--config <frag>', 'config fragments (default: kernels/configs/minimal.config) (repeatable)', collect)
    .option('--seed <n>', 'seed for both runs', intArg('--seed'), 1)
    .option('-j, --jobs <n>', 'VMs at once', intArg('--jobs', 1))
    .option('--confirm <n>', 'reruns to confirm a new finding', intArg('--confirm'), 2)
    .option('-o, --out <dir>', 'output directory')
    .option(
      '--shard <I/N>',
      "run only the I-th of N parts of the cases on both kernels (and confirm that part's new findings); join the parts with qcrash merge OUT DIR...",
      parseShardSpec,
    )
    .action(
      returnsExitCode(
        async (
          scenarios: string[],
          o: {
            patch?: string[];
            series?: boolean;
            mutants?: string;
            tree?: string;
            config?: string[];
            seed: number;
            jobs?: number;
            confirm: number;
            out?: string;
            shard?: ShardSpec;
          },
        ) => {
          // What every kind of validate shares; kernel builds rewrite one progress line in place on a terminal.
          const shared = {
            scenarios,
            seed: o.seed,
            confirmRuns: o.confirm,
            ...(o.tree ? { tree: o.tree } : {}),
            ...(o.config ? { configs: o.config } : {}),
            ...(o.jobs ? { jobs: o.jobs } : {}),
            reporters: [new ProgressReporter()],
            onProgress: streamProgressSink(process.stderr, 'qcrash: '),
          };
          if (o.series) {
            if (o.mutants)
              throw new ConfigError(
                '--series and --mutants do not go together: --mutants validates each patch of DIR alone, --series judges --patch files as one series',
              );
            if (o.shard)
              throw new ConfigError(
                '--series does not take --shard yet: each prefix of the series is judged on its own kernel; shard a plain validate instead',
              );
            if (!o.patch?.length)
              throw new ConfigError(
                '--series needs the series: --patch FILE... (patch files in order, or an mbox such as b4 am writes)',
              );
            const r = await validateSeries({ ...shared, patches: o.patch, ...(o.out ? { out: o.out } : {}) });
            process.stdout.write(seriesReport(r));
            process.stderr.write(`qcrash: validate results in ${r.dir}\n`);
            return r.steps.some((s) => !patchPassed(s)) ? ExitCode.failed : ExitCode.pass;
          }
          const sets: string[][] = [];
          if (o.mutants) {
            const files = (await readdir(o.mutants).catch(() => [] as string[])).filter((f) => f.endsWith('.patch')).sort();
            if (!files.length) throw new ConfigError(`no *.patch files in ${o.mutants}`);
            for (const f of files) sets.push([resolve(join(o.mutants, f))]);
          } else if (o.patch?.length) sets.push(o.patch);
          else throw new ConfigError('give --patch FILE... (or --mutants DIR)');
          let code: number = ExitCode.pass;
          for (const patches of sets) {
            const r = await validatePatch({
              ...shared,
              patches,
              ...(o.shard ? { shard: o.shard } : {}),
              ...(o.out ? { out: sets.length > 1 ? join(o.out, patches[0]!.split('/').pop()!) : o.out } : {}),
            });
            process.stdout.write(validateReport(r));
            process.stderr.write(`qcrash: validate results in ${r.dir}\n`);
            if (r.shard) {
              // A part has no verdict of its own: the merge of every part judges.
              process.stderr.write(
                `qcrash: this is shard ${r.shard.index}/${r.shard.total}; judge the whole with: qcrash merge OUT ${r.dir} (and the other shards' folders)\n`,
              );
              continue;
            }
            if (o.mutants && !r.introduced.length) {
              process.stdout.write(`MISSED: ${patches[0]} introduced no finding\n`);
              code = ExitCode.failed;
            }
            if (!o.mutants && r.introduced.length) code = ExitCode.failed;
          }
          return code;
        },
      ),
    );
}
