import type { CrashPoint } from '../../scenario/model.ts';
import type { Machine } from '../../vm/machine/machine.ts';
import { GdbClient, type StopReply } from '../../vm/gdb/client.ts';
import type { SymbolTable } from '../../vm/gdb/symbols.ts';
import { InfraError } from '../../util/errors.ts';
import type { FiredPoint } from '../crash-state.ts';
import { commitFunction } from '../kernel-symbols.ts';
import type { KernelPointDriver } from './strategy.ts';

/**
 * Drives kernel and commit crash points through QEMU's gdbstub. Connecting
 * stops the guest (QEMU pauses the VM when a debugger attaches), which
 * happens while the agent holds the step at its start marker; the
 * breakpoint is inserted and the guest continued before the agent is told to go.
 */
export class GdbPointDriver implements KernelPointDriver, AsyncDisposable {
  private gdb?: GdbClient;
  private bp?: bigint;
  private returnBp?: bigint;
  private point?: CrashPoint;
  private armedAt = 0;
  /** Every packet exchanged with the gdbstub, kept with the case. */
  readonly transcript: string[] = [];

  constructor(
    private readonly machine: Machine,
    private readonly syms: SymbolTable,
  ) {}

  async arm(point: CrashPoint): Promise<void> {
    if (!this.machine.gdbSocket) throw new InfraError('the VM was started without a gdbstub');
    this.point = point;
    this.gdb = new GdbClient();
    await this.gdb.connect(this.machine.gdbSocket);
    const sym = point.kind === 'kernel' ? point.symbol : commitFunction;
    this.bp = this.syms.resolve(sym) + BigInt(point.kind === 'kernel' ? point.offset : 0);
    await this.gdb.insertBreakpoint(this.bp);
    this.gdb.continue();
    this.armedAt = performance.now();
  }

  async wait(stepDone: Promise<unknown>): Promise<FiredPoint | undefined> {
    const gdb = this.gdb!;
    const point = this.point!;
    const settled = stepDone.then(
      () => 'done' as const,
      () => 'done' as const,
    );
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
        const fired = {
          kind: 'kernel' as const,
          step: point.step,
          hits,
          rip: `0x${rip.toString(16)}`,
          symbol: this.syms.symbolize(rip),
          atMs: performance.now() - this.armedAt,
        };
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
          const done = await this.waitCommits(point.step, point.thenCommits, bound);
          return done
            ? { ...fired, thenCommit: { symbol: done.kind === 'commit' ? done.symbol : '?', commits: point.thenCommits } }
            : undefined;
        }
        if (point.delayMs) {
          await gdb.continueFrom([this.bp!], rip);
          await new Promise((r) => setTimeout(r, point.delayMs));
        }
        return fired;
      }
    }
    if (point.kind === 'commit') return this.waitCommits(point.step, point.k, settled);
    return undefined;
  }

  /**
   * Count completed jbd2 commits: at the commit function's entry put a
   * one-shot breakpoint on its return address; when that fires, a commit
   * has completed. Returns at the k-th, or undefined if `settled` came first.
   */
  private async waitCommits(step: string, k: number, settled: Promise<'done'>): Promise<FiredPoint | undefined> {
    const gdb = this.gdb!;
    const stop = async (): Promise<StopReply | 'done'> => Promise.race([gdb.waitStop(24 * 3600_000), settled]);
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
        if (commits >= k)
          return {
            kind: 'commit',
            step,
            k: commits,
            rip: `0x${rip.toString(16)}`,
            symbol: this.syms.symbolize(rip),
            atMs: performance.now() - this.armedAt,
          };
      }
      await gdb.continueFrom([this.bp!], rip);
    }
  }

  /**
   * The step finished without the point firing, and the VM is killed next:
   * drop the connection and keep the transcript. Stopping the guest first to
   * clear the breakpoints cost up to 10 s per case (QEMU's gdbstub does not
   * always answer an interrupt), for a guest that is about to die anyway.
   */
  async disarm(): Promise<void> {
    const gdb = this.gdb;
    if (!gdb) return;
    this.keepTranscript(gdb);
    this.transcript.push('(disarmed: connection closed, the VM is killed next)');
    gdb.close();
    this.gdb = undefined;
  }

  private keepTranscript(gdb: GdbClient): void {
    this.transcript.push(...gdb.transcript.toText().trimEnd().split('\n').filter(Boolean));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.gdb) {
      this.keepTranscript(this.gdb);
      this.gdb.close();
      this.gdb = undefined;
    }
  }
}

/** The driver factory runs use: one gdbstub connection per case, the kernel's symbols looked up once. */
export function gdbDriverFactory(symbols: () => Promise<SymbolTable>) {
  return async (machine: Machine): Promise<GdbPointDriver> => new GdbPointDriver(machine, await symbols());
}
