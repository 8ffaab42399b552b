import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { CrashPoint } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { MachineLauncher } from '../vm/machine/machine.ts';
import { SymbolTable } from '../vm/gdb/symbols.ts';
import { cacheDir } from '../util/paths.ts';
import { TempDir } from '../util/tempdir.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { InfraError } from '../util/errors.ts';
import { CacheEntry, useCacheEntry } from '../util/cache-entry.ts';

const symbolTables = new Map<string, Promise<SymbolTable>>();

/**
 * The kernel's text symbols. A real System.map when there is one; Debian's
 * /boot/System.map is a one-line placeholder, so for the stock kernel the
 * guest's /proc/kallsyms is read once through the agent (one machine from
 * the pool) and cached (sealed by content: a damaged copy is read again).
 * The guest boots with nokaslr, so the addresses hold for every later boot.
 */
export function kernelSymbols(machines: MachineLauncher, kernel: KernelInfo, initrd: string): Promise<SymbolTable> {
  let t = symbolTables.get(kernel.id);
  if (!t) {
    t = loadSymbols(machines, kernel, initrd);
    symbolTables.set(kernel.id, t);
    t.catch(() => symbolTables.delete(kernel.id));
  }
  return t;
}

async function loadSymbols(machines: MachineLauncher, kernel: KernelInfo, initrd: string): Promise<SymbolTable> {
  if (kernel.systemMap) {
    const table = SymbolTable.parse(await readFile(kernel.systemMap, 'utf8'));
    if (table.size > 1000) return table;
  }
  const file = cacheDir('symbols', `${kernel.id.replace(/[^A-Za-z0-9._-]/g, '_')}.kallsyms`);
  const entry = CacheEntry.file('kernel symbol table', file);
  await useCacheEntry(entry, async () => {
    await mkdir(dirname(file), { recursive: true });
    await writeFileAtomic(file, await readGuestKallsyms(machines, kernel, initrd));
    await entry.seal();
  });
  return SymbolTable.parse(await readFile(file, 'utf8'));
}

async function readGuestKallsyms(machines: MachineLauncher, kernel: KernelInfo, initrd: string): Promise<string> {
  await using tmp = await TempDir.create('kallsyms');
  const disk = tmp.join('empty.img');
  await writeFile(disk, Buffer.alloc(1 << 20));
  let text: string;
  {
    await using machine = await machines.launch({ role: 'symbols', kernel, initrd, disk: { path: disk, format: 'raw' } });
    const r = await machine.agent.call('kallsyms', [], 120_000);
    if (r.exitCode !== 0 || !r.output) throw new InfraError(`could not read /proc/kallsyms in the guest (exit ${r.exitCode})`);
    text = r.output;
  }
  const table = SymbolTable.parse(text);
  if (table.size < 1000) throw new InfraError(`the guest's /proc/kallsyms has only ${table.size} text symbols (kptr_restrict?)`);
  return text;
}

/** The function whose completed calls mark the end of a jbd2 commit. */
export const commitFunction = 'jbd2_journal_commit_transaction';

/** Check every kernel crash point's symbol before any workload VM boots: unknown symbols are exit 2 with suggestions. */
export async function validateKernelPoints(
  machines: MachineLauncher,
  kernel: KernelInfo,
  initrd: string,
  points: Array<{ point: CrashPoint; file: string; line?: number }>,
): Promise<void> {
  const needed = points.filter((p) => p.point.kind === 'kernel' || p.point.kind === 'commit');
  if (!needed.length) return;
  const syms = await kernelSymbols(machines, kernel, initrd);
  for (const { point, file, line } of needed)
    syms.resolve(point.kind === 'kernel' ? point.symbol : commitFunction, { file, ...(line !== undefined ? { line } : {}) });
}
