import type { CaseSpec, CrashPoint } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { FiredPoint } from '../run/result.ts';
import type { Vm } from '../vm/vm.ts';
import { GdbClient, type StopReply } from '../vm/gdb.ts';
import { SymbolTable } from '../vm/symbols.ts';
import { InfraError } from '../util/errors.ts';
import type { KernelPointDriver } from './workload.ts';

const symbolTables = new Map<string, Promise<SymbolTable>>();

/** The kernel's symbol table (System.map; the guest is booted with nokaslr so addresses match). */
export function kernelSymbols(kernel: KernelInfo): Promise<SymbolTable> {
  if (!kernel.systemMap) return Promise.reject(new InfraError(`kernel ${kernel.id} has no System.map: kernel crash points need one`));
  let t = symbolTables.get(kernel.systemMap);
  if (!t) {
    t = SymbolTable.load(kernel.systemMap);
    symbolTables.set(kernel.systemMap, t);
  }
  return t;
}

/** The function whose completed calls mark the end of a jbd2 commit. */
export const commitFunction = 'jbd2_journal_commit_transaction';

/** Check every kernel crash point's symbol before any VM boots: unknown symbols are exit 2 with suggestions. */
export async function validateKernelPoints(kernel: KernelInfo, points: Array<{ point: CrashPoint; file: string }>): Promise<void> {
  const needed = points.filter((p) => p.point.kind === 'kernel' || p.point.kind === 'commit');
  if (!needed.length) return;
  const syms = await kernelSymbols(kernel);
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
        if (hits < wanted) {
          gdb.continue();
          continue;
        }
        const { rip } = await gdb.registers();
        if (point.delayMs) {
          gdb.continue();
          await new Promise((r) => setTimeout(r, point.delayMs));
        }
        return { kind: 'kernel', hits, rip: `0x${rip.toString(16)}`, symbol: this.syms.symbolize(rip) };
      }
    }
    if (point.kind === 'commit') {
      // Entry of the commit function: put a one-shot breakpoint on its return
      // address; when that fires, the k-th commit has completed.
      let commits = 0;
      for (;;) {
        const s = await stop();
        if (s === 'done') return undefined;
        const { rip, rsp } = await gdb.registers();
        if (rip === this.bp) {
          const ret = (await gdb.readMemory(rsp, 8)).readBigUInt64LE(0);
          await gdb.insertBreakpoint(ret);
          this.returnBp = ret;
          gdb.continue();
          continue;
        }
        if (this.returnBp !== undefined && rip === this.returnBp) {
          commits++;
          await gdb.removeBreakpoint(this.returnBp);
          this.returnBp = undefined;
          if (commits >= point.k) return { kind: 'commit', hits: commits, rip: `0x${rip.toString(16)}`, symbol: this.syms.symbolize(rip) };
        }
        gdb.continue();
      }
    }
    return undefined;
  }

  private returnBp?: bigint;

  async disarm(): Promise<void> {
    const gdb = this.gdb;
    if (!gdb) return;
    // The step finished without the point firing: stop, clear, let the guest run on.
    await gdb.interrupt().catch(() => {});
    if (this.bp !== undefined) await gdb.removeBreakpoint(this.bp).catch(() => {});
    if (this.returnBp !== undefined) await gdb.removeBreakpoint(this.returnBp).catch(() => {});
    await gdb.detach();
    gdb.close();
    this.gdb = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.gdb?.close();
  }
}

export function kernelPointDriverFactory(kernel: KernelInfo) {
  return async (vm: Vm, _spec: CaseSpec) => new GdbPointDriver(vm, await kernelSymbols(kernel));
}
