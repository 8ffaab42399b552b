import { writeFile } from 'node:fs/promises';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';

/** A kernel that is never booted: scripted machines (fake-machine.ts) stand for it. */
export function fakeKernel(id: string, release = `fake-${id}`): KernelInfo {
  return { id, kind: 'path', release, bzImage: '/nonexistent', builtinDrivers: true, acpi: true };
}

/**
 * The small scenario the fake-machine tests of validate, series, nightly,
 * shards and merge judge: mount, sync, drop-caches, a kill after each, and a
 * run without a crash first or last when asked (the order sets the cases'),
 * and repetitions.
 */
export async function writeStepsScenario(file: string, opts: { none?: 'first' | 'last'; repeat?: number } = {}): Promise<string> {
  const kills = ['after: mount', 'after: sync', 'after: drop-caches'];
  if (opts.none === 'first') kills.unshift('none');
  if (opts.none === 'last') kills.push('none');
  await writeFile(
    file,
    [
      'recipe: small-4k',
      'recovery: [e2fsck]',
      'steps:',
      '  - mount',
      '  - sync',
      '  - drop-caches',
      'kill:',
      ...kills.map((k) => `  - ${k}`),
      ...(opts.repeat ? [`repeat: ${opts.repeat}`] : []),
      '',
    ].join('\n'),
  );
  return file;
}
