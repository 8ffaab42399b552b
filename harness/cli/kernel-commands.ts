import type { Command } from 'commander';
import { buildKernel } from '../kernel/build.ts';
import { streamProgressSink } from '../kernel/build-progress.ts';
import { listBuiltKernels } from '../kernel/resolve.ts';
import { collect, intArg } from './run-command.ts';

export function registerKernelCommands(program: Command): void {
  const kernel = program.command('kernel').description('build and list kernels for --kernel');
  kernel
    .command('build')
    .description(
      'build a kernel (default: Debian linux-source-6.1 + kernels/configs/minimal.config); prints its id and bzImage path',
    )
    .option('--tree <dir>', 'kernel git tree (default: the linux-source-6.1 tarball)')
    .option('--rev <rev>', 'revision of --tree to build', 'HEAD')
    .option('--patch <file>', 'patches to apply in order (git format-patch/mbox or plain diff) (repeatable)', collect)
    .option(
      '--config <frag>',
      'config fragments (file or name in kernels/configs/), replacing the default minimal fragment (repeatable)',
      collect,
    )
    .option('-j, --jobs <n>', 'make -j', intArg('--jobs', 1))
    .action(async (o: { tree?: string; rev: string; patch?: string[]; config?: string[]; jobs?: number }) => {
      const k = await buildKernel({
        ...(o.tree ? { tree: o.tree, rev: o.rev } : {}),
        ...(o.patch ? { patches: o.patch } : {}),
        ...(o.config ? { configs: o.config } : {}),
        ...(o.jobs ? { jobs: o.jobs } : {}),
        onProgress: streamProgressSink(process.stderr),
      });
      process.stdout.write(`${k.id}\t${k.release}\t${k.bzImage}\n`);
    });
  kernel
    .command('list')
    .description('kernels in the cache')
    .action(async () => {
      for (const k of await listBuiltKernels()) {
        const p = k.provenance as { patches?: Array<{ subject: string }> } | undefined;
        process.stdout.write(`${k.id}\t${k.release}\t${(p?.patches ?? []).map((x) => x.subject).join('; ') || '(no patches)'}\n`);
      }
    });
}
