import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { runBench, formatBench, benchParts, type BenchPart } from '../bench/bench.ts';
import { ConfigError } from '../util/errors.ts';
import { intArg } from './run-command.ts';

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      "measure what users wait for, each two ways in one run: e2fsck-only cases and the default suite's mix as a naive boot-per-case loop against qcrash, a validate of a one-file patch by phase, and write-log states (the fstests loop against the incremental replay); writes JSON",
    )
    .option('--cases <n>', 'crash cases per side of the e2fsck-only comparison', intArg('--cases', 1), 24)
    .option(
      '--mix-cases <n>',
      'cases of the default mix per side (a systematic sample; 0: all of them)',
      intArg('--mix-cases', 0),
      16,
    )
    .addOption(
      new Option(
        '--parts <list>',
        `what to measure, comma-separated (${benchParts.join(', ')}; writelog records two logs and the default suite's, and checks about 1400 states three ways, the longest part)`,
      ).default(benchParts.join(',')),
    )
    .option('--validate-patch <file>', 'the patch the validate part builds (default: a one-line change of fs/ext4/migrate.c)')
    .option('-j, --jobs <n>', 'VMs at once for qcrash', intArg('--jobs', 1))
    .option('-o, --out <file>', 'JSON output (default results/bench-<date>.json)')
    .option(
      '--recordings <dir>',
      "keep the default suite's write-log recordings in DIR and reuse them in later runs (each unit's only while the kernel, base image and steps are the same): figures of two commits then compare on the same crash states",
    )
    .action(
      async (o: {
        cases: number;
        mixCases: number;
        parts: string;
        validatePatch?: string;
        jobs?: number;
        out?: string;
        recordings?: string;
      }) => {
        const parts = o.parts
          .split(',')
          .map((p) => p.trim())
          .filter(Boolean);
        const unknown = parts.filter((p) => !(benchParts as readonly string[]).includes(p));
        if (unknown.length || !parts.length) throw new ConfigError(`--parts ${o.parts}: choose from ${benchParts.join(', ')}`);
        const r = await runBench({
          cases: o.cases,
          mixCases: o.mixCases,
          parts: parts as BenchPart[],
          ...(o.validatePatch ? { validatePatch: o.validatePatch } : {}),
          ...(o.jobs ? { jobs: o.jobs } : {}),
          ...(o.out ? { out: o.out } : {}),
          ...(o.recordings ? { recordings: resolve(o.recordings) } : {}),
          onProgress: (line) => process.stderr.write(`qcrash bench: ${line}\n`),
        });
        process.stdout.write(formatBench(r));
      },
    );
}
