import type { CaseSpec, CrashPoint } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { FiredPoint } from '../run/result.ts';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Vm } from '../vm/vm.ts';
import { cacheDir } from '../util/paths.ts';
import { TempDir } from '../util/tempdir.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { GdbClient, type StopReply } from '../vm/gdb.ts';
import { SymbolTable } from '../vm/symbols.ts';
import { InfraError } from '../util/errors.ts';
import type { KernelPointDriver } from './workload.ts';

const symbolTables = new Map<string, Promise<SymbolTable>>();

/**
 * The kernel's text symbols. A real System.map when there is one; Debian's
 * /boot/System.map is a one-line placeholder, so for the stock kernel the
 * guest's /proc/kallsyms is read once through the agent and cached. The
 * guest boots with nokaslr, so the addresses hold for every later boot.
 */
export function kernelSymbols(kernel: KernelInfo, initrd: string): Promise<SymbolTable> {
  let t = symbolTables.get(kernel.id);
  if (!t) {
    t = loadSymbols(kernel, initrd);
    symbolTables.set(kernel.id, t);
    t.catch(() => symbolTables.delete(kernel.id));
  }
  return t;
}

async function loadSymbols(kernel: KernelInfo, initrd: string): Promise<SymbolTable> {
  if (kernel.systemMap) {
    const table = SymbolTable.parse(await readFile(kernel.systemMap, 'utf8'));
    if (table.size > 1000) return table;
  }
  const file = cacheDir('symbols', `${kernel.id.replace(/[^A-Za-z0-9._-]/g, '_')}.kallsyms`);
  const cached = await readFile(file, 'utf8').catch(() => undefined);
  if (cached) return SymbolTable.parse(cached);
  await using tmp = await TempDir.create('kallsyms');
  const disk = tmp.join('empty.img');
  await writeFile(disk, Buffer.alloc(1 << 20));
  let text: string;
  {
    await using vm = await Vm.launch({ kernel, initrd, disk: { path: disk, format: 'raw' }, name: 'qcrash-kallsyms' });
    const r = await vm.agent.call('kallsyms', [], 120_000);
    if (r.exitCode !== 0 || !r.output) throw new InfraError(`could not read /proc/kallsyms in the guest (exit ${r.exitCode})`);
    text = r.output;
  }
  const table = SymbolTable.parse(text);
  if (table.size < 1000) throw new InfraError(`the guest's /proc/kallsyms has only ${table.size} text symbols (kptr_restrict?)`);
  await mkdir(dirname(file), { recursive: true });
  await writeFileAtomic(file, text);
  return table;
}

/** The function whose completed calls mark the end of a jbd2 commit. */
export const commitFunction = 'jbd2_journal_commit_transaction';

/** Check every kernel crash point's symbol before any VM boots: unknown symbols are exit 2 with suggestions. */
export async function validateKernelPoints(kernel: KernelInfo, initrd: string, points: Array<{ point: CrashPoint; file: string }>): Promise<void> {
  const needed = points.filter((p) => p.point.kind === 'kernel' || p.point.kind === 'commit');
  if (!needed.length) return;
  const syms = await kernelSymbols(kernel, initrd);
  for (const { point, file } of needed) syms.resolve(point.kind === 'kernel' ? point.symbol : commitFunction, { file });
}

/**
 * Drives kernel crash points through QEMU's gdbstub. Connecting stops the
 * guest (QEMU pauses the VM when a debugger attaches), which happens while
 * the agent holds the step at its start marker; the breakpoint is inserted
 * and the guest continued before the agent is told to go.
 */
class GdbPointDriver implements KernelPointDriver, AsyncDisposable {
  private gdb?: GdbClient;
  private bp?: bigint;
  private point?: CrashPoint;

  constructor(private readonly vm: Vm, private readonly syms: SymbolTable) {}

  async arm(point: CrashPoint): Promise<void> {
    if (!this.vm.paths.gdb) throw new InfraError('VM was started without a gdbstub');
    this.point = point;
    this.gdb = new GdbClient();
    await this.gdb.connect(this.vm.paths.gdb);
    const sym = point.kind === 'kernel' ? point.symbol : commitFunction;
    this.bp = this.syms.resolve(sym) + BigInt(point.kind === 'kernel' ? point.offset : 0);
    await this.gdb.insertBreakpoint(this.bp);
    this.gdb.continue();
  }

  async wait(stepDone: Promise<unknown>): Promise<FiredPoint | undefined> {
    const gdb = this.gdb!;
    const point = this.point!;
    const settled = stepDone.then(() => 'done' as const, () => 'done' as const);
    const stop = async (): Promise<StopReply | 'done'> => Promise.race([gdb.waitStop(24 * 3600_000), settled]);
    if (point.kind === 'kernel') {
      const wanted = point.hit + point.thenHits;
      for (let hits = 1; ; hits++) {
        const s = await stop();
        if (s === 'done') return undefined;
        const { rip } = await gdb.registers();
        if (hits < wanted) {
          await gdb.continueFrom([this.bp!], rip);
          continue;
        }
        const fired = { kind: 'kernel', hits, rip: `0x${rip.toString(16)}`, symbol: this.syms.symbolize(rip) };
        if (point.thenCommits) {
          // Make the state at the stop durable: run on until that many commits
          // complete, then kill (the stop alone only exposes older commits).
          await gdb.removeBreakpoint(this.bp!);
          this.bp = this.syms.resolve(commitFunction);
          await gdb.insertBreakpoint(this.bp);
          gdb.continue();
          // The commit that makes the stopped state durable may complete after
          // the step returns: wait for it regardless, within a bound.
          const bound = new Promise<'done'>((r) => setTimeout(() => r('done'), 60_000).unref());
          const done = await this.waitCommits(point.thenCommits, bound);
          return done ? { ...fired, kind: 'kernel+commit', symbol: `${fired.symbol} then ${done.symbol}` } : undefined;
        }
        if (point.delayMs) {
          await gdb.continueFrom([this.bp!], rip);
          await new Promise((r) => setTimeout(r, point.delayMs));
        }
        return fired;
      }
    }
    if (point.kind === 'commit') return this.waitCommits(point.k, settled);
    return undefined;
  }

  /**
   * Count completed jbd2 commits: at the commit function's entry put a
   * one-shot breakpoint on its return address; when that fires, a commit
   * has completed. Returns at the k-th, or undefined if the step ended first.
   */
  private async waitCommits(k: number, settled: Promise<'done'>): Promise<FiredPoint | undefined> {
    const gdb = this.gdb!;
    const stop = async (): Promise<StopReply | 'done'> => Promise.race([gdb.waitStop(24 * 3600_000), settled]);
    {
      let commits = 0;
      for (;;) {
        const s = await stop();
        if (s === 'done') return undefined;
        const { rip, rsp } = await gdb.registers();
        if (rip === this.bp) {
          const ret = (await gdb.readMemory(rsp, 8)).readBigUInt64LE(0);
          await gdb.insertBreakpoint(ret);
          this.returnBp = ret;
          await gdb.continueFrom([this.bp], rip);
          continue;
        }
        if (this.returnBp !== undefined && rip === this.returnBp) {
          commits++;
          await gdb.removeBreakpoint(this.returnBp);
          this.returnBp = undefined;
          if (commits >= k) return { kind: 'commit', hits: commits, rip: `0x${rip.toString(16)}`, symbol: this.syms.symbolize(rip) };
        }
        await gdb.continueFrom([this.bp!], rip);
      }
    }
  }

  private returnBp?: bigint;

  /**
   * The step finished without the point firing, and the VM is killed next:
   * drop the connection and keep the transcript. Stopping the guest first to
   * clear the breakpoints cost up to 10 s per case (QEMU's gdbstub does not
   * always answer an interrupt), for a guest that is about to die anyway.
   */
  async disarm(): Promise<void> {
    const gdb = this.gdb;
    if (!gdb) return;
    this.transcript.push(...gdb.transcript, '(disarmed: connection closed, the VM is killed next)');
    gdb.close();
    this.gdb = undefined;
  }

  /** Every packet exchanged with the gdbstub, kept with the case. */
  readonly transcript: string[] = [];

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.gdb) this.transcript.push(...this.gdb.transcript);
    this.gdb?.close();
  }
}

export function kernelPointDriverFactory(kernel: KernelInfo, initrd: string) {
  return async (vm: Vm, _spec: CaseSpec) => new GdbPointDriver(vm, await kernelSymbols(kernel, initrd));
}
