import type { HoldPoint } from '../../scenario/model.ts';
import type { Machine } from '../../vm/machine/machine.ts';
import { GdbClient, type StopReply } from '../../vm/gdb/client.ts';
import type { SymbolTable } from '../../vm/gdb/symbols.ts';
import { InfraError, errorMessage } from '../../util/errors.ts';
import type { HeldInterleaving, HoldEnd } from '../crash-state.ts';

/**
 * A hold point's driver: the gdbstub in runs, a fake in tests. `arm` is
 * called while the agent holds the step at its start marker; `run` then
 * follows the step until the hold is over and every vCPU runs again (or the
 * step finished without the point being hit), and says what happened. It
 * never throws for what the guest did: a hold that cannot end cleanly ends
 * with a record saying so, and the workload goes on to its crash point.
 */
export interface HoldDriver {
  arm(point: HoldPoint): Promise<void>;
  run(stepDone: Promise<unknown>): Promise<HeldInterleaving>;
  readonly transcript?: string[];
}

/** The writers' progress the console shows: per mode, the last count reported, summed over modes (qcrash-io's progress lines). */
export function writerProgress(consoleText: string): number {
  const last = new Map<string, number>();
  for (const m of consoleText.matchAll(/qcrash-io: (\S+) (?:stored|rounds)=(\d+)/g)) last.set(m[1]!, Number(m[2]));
  let sum = 0;
  for (const n of last.values()) sum += n;
  return sum;
}

function holdPointName(p: Pick<HoldPoint, 'symbol' | 'offset' | 'afterCall'>): string {
  return `${p.symbol}${p.afterCall ? ` after ${p.afterCall}()` : ''}${p.offset ? `+0x${p.offset.toString(16)}` : ''}`;
}

/** The hold in one line. */
export function describeHold(h: Omit<HeldInterleaving, 'line'>): string {
  const at = `${h.point} (hit ${h.hit})`;
  if (!h.reached)
    return h.ended === 'vm-gone'
      ? `hold at ${at}: the VM ended before the point was hit`
      : `hold at ${at}: not hit, the step finished first`;
  const cpus = `vCPU ${h.heldCpu} held at ${h.symbol ?? h.point} for ${Math.round(h.heldMs ?? 0)} ms while vCPU ${(h.ranCpus ?? []).join(', ') || 'none'} ran`;
  const p = h.progress;
  const writes = p ? `writer progress ${p.before} -> ${p.after}${p.wanted !== undefined ? `, marker at ${p.wanted}` : ''}` : '';
  switch (h.ended) {
    case 'marker':
      return `${cpus}: marker reached (${writes})`;
    case 'limit':
      return p?.wanted !== undefined
        ? `${cpus}: marker not reached, the hold ended at its limit (${writes}${p.after === p.before ? ': the other vCPU made no progress, likely waiting for the held task' : ''})`
        : `${cpus}: held for its whole limit (${writes})`;
    case 'no-other-cpu':
      return `hold at ${at}: hit, but the guest has no other vCPU to run (cpus: 1); nothing was held`;
    case 'stopped':
      return `${cpus}: cut short, the guest stopped on its own during the hold (${writes})`;
    case 'vm-gone':
      return `${cpus}: cut short, the VM ended during the hold`;
    case 'not-hit':
      return `hold at ${at}: not hit`;
  }
}

function record(h: Omit<HeldInterleaving, 'line'>): HeldInterleaving {
  return { ...h, line: describeHold(h) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface GdbHoldOptions {
  /** How often the console is read for the writers' progress. */
  pollMs?: number;
  /** Bound on each wait for the gdbstub (an interrupt's stop, a detach). */
  gdbTimeoutMs?: number;
}

/**
 * Holds through QEMU's gdbstub. At the hit the whole guest is stopped
 * (all-stop); the breakpoint comes out, and `vCont;c:T...` resumes every
 * thread but the one that stopped, so the held task's vCPU stays where it
 * was while the others run. The hold ends with an interrupt (every vCPU
 * stops) and a detach, which resumes them all with no breakpoint left.
 */
export class GdbHoldDriver implements HoldDriver, AsyncDisposable {
  private gdb?: GdbClient;
  private bp?: bigint;
  private point?: HoldPoint;
  readonly transcript: string[] = [];

  constructor(
    private readonly machine: Machine,
    private readonly syms: SymbolTable,
    private readonly opts: GdbHoldOptions = {},
  ) {}

  async arm(point: HoldPoint): Promise<void> {
    if (!this.machine.gdbSocket) throw new InfraError('the VM was started without a gdbstub');
    this.point = point;
    this.gdb = new GdbClient();
    await this.gdb.connect(this.machine.gdbSocket);
    try {
      const start = this.syms.resolve(point.symbol);
      this.bp =
        (point.afterCall ? await this.returnSiteOfLastCall(start, point.symbol, point.afterCall) : start) + BigInt(point.offset);
      await this.gdb.insertBreakpoint(this.bp);
    } catch (e) {
      // Not armed: let the guest go on as if no debugger had come (detach resumes it).
      await this.detach();
      throw e;
    }
    this.gdb.continue();
  }

  async run(stepDone: Promise<unknown>): Promise<HeldInterleaving> {
    try {
      return await this.follow(stepDone);
    } catch (e) {
      // The VM was killed under the hold (a kill point timed inside the held step): the connection is gone, not broken.
      const point = this.point!;
      if (this.gdb?.closed)
        return record({
          step: point.step,
          point: holdPointName(point),
          hit: point.hit,
          reached: false,
          ended: 'vm-gone',
          markerReached: false,
        });
      throw e;
    }
  }

  private async follow(stepDone: Promise<unknown>): Promise<HeldInterleaving> {
    const gdb = this.gdb;
    const point = this.point;
    if (!gdb || !point || this.bp === undefined) throw new InfraError('hold: run() before arm()');
    const bp = this.bp;
    const base = { step: point.step, point: holdPointName(point), hit: point.hit };
    const stop = await this.waitForHit(gdb, point, bp, stepDone);
    if (stop === 'not-hit' || stop === 'vm-gone') return record({ ...base, reached: false, ended: stop, markerReached: false });
    const heldThread = stop.thread ?? (await gdb.currentThread());
    const symbol = this.syms.symbolize(bp);
    await gdb.removeBreakpoint(bp);
    const others = (await gdb.threads()).filter((t) => t !== heldThread);
    const cpuOf = (t: number) => t - 1;
    const before = writerProgress(await this.machine.consoleText());
    const wanted = point.until ? before + point.until.count : undefined;
    const held = {
      ...base,
      reached: true,
      heldCpu: heldThread !== undefined ? cpuOf(heldThread) : undefined,
      ranCpus: others.map(cpuOf),
      symbol,
    };
    if (!others.length) {
      await this.detach();
      const progress = { before, after: before, ...(wanted !== undefined ? { wanted } : {}) };
      return record({ ...held, ended: 'no-other-cpu', markerReached: false, heldMs: 0, progress });
    }
    const { ended, heldMs, after } = await this.runOthers(gdb, others, point.limitMs, before, wanted);
    const progress = { before, after, ...(wanted !== undefined ? { wanted } : {}) };
    return record({ ...held, ended, markerReached: ended === 'marker', heldMs, progress });
  }

  /**
   * Wait for the point's n-th hit by the held step's task: the stop that
   * holds it, or why there is none (the step finished first, or the VM went).
   */
  private async waitForHit(
    gdb: GdbClient,
    point: HoldPoint,
    bp: bigint,
    stepDone: Promise<unknown>,
  ): Promise<StopReply | 'not-hit' | 'vm-gone'> {
    const settled = stepDone.then(
      () => 'done' as const,
      () => 'done' as const,
    );
    for (let hits = 1; ; hits++) {
      let s: StopReply | 'done';
      try {
        s = await Promise.race([gdb.waitStop(24 * 3600_000), settled]);
      } catch {
        return 'vm-gone';
      }
      if (s === 'done') {
        gdb.abandonStopWaits();
        await this.release();
        return 'not-hit';
      }
      if (s.kind !== 'signal') return 'vm-gone';
      const { rip } = await gdb.registers();
      if (rip === bp && hits >= point.hit) return s;
      if (rip !== bp) hits--; // a stop that is not ours (the attach, an interrupt) is no hit
      await gdb.continueFrom([bp], rip);
    }
  }

  /**
   * Let every other vCPU run, the held one stopped, until the writers have
   * reported `wanted` progress, the limit passes, the guest stops or the VM
   * goes; then stop them and detach, which lets every vCPU run on.
   */
  private async runOthers(
    gdb: GdbClient,
    others: number[],
    limitMs: number,
    before: number,
    wanted: number | undefined,
  ): Promise<{ ended: HoldEnd; heldMs: number; after: number }> {
    const t0 = performance.now();
    gdb.continueThreads(others);
    let ended: HoldEnd = 'limit';
    let after = before;
    for (;;) {
      await sleep(this.opts.pollMs ?? 20);
      if (gdb.closed) {
        ended = 'vm-gone';
        break;
      }
      after = writerProgress(await this.machine.consoleText());
      if (gdb.targetState === 'stopped') {
        ended = 'stopped';
        break;
      }
      if (wanted !== undefined && after >= wanted) {
        ended = 'marker';
        break;
      }
      if (performance.now() - t0 >= limitMs) break;
    }
    const heldMs = performance.now() - t0;
    if (ended !== 'vm-gone') {
      if (ended !== 'stopped') await this.interrupt();
      else await gdb.waitStop(this.opts.gdbTimeoutMs ?? 5000).catch(() => undefined); // take the stop off the channel
      after = writerProgress(await this.machine.consoleText());
      await this.detach();
    }
    return { ended, heldMs, after };
  }

  /**
   * Where `symbol` goes on after its last direct call of `callee`: read the
   * function's code from the guest (up to the next symbol) and find the
   * last `call rel32` (E8) whose target is the callee. A static callee
   * called once per iteration and a last time after the loop (finish_range
   * in ext4_ext_migrate) has no hit count that means "after the loop"; its
   * return site does, on every build that keeps the call.
   */
  private async returnSiteOfLastCall(start: bigint, symbol: string, callee: string): Promise<bigint> {
    const target = this.syms.resolve(callee);
    const end = this.syms.nextAfter(start) ?? start + 0x4000n;
    const len = Number(end - start);
    if (len <= 0 || len > 0x10000) throw new InfraError(`hold: cannot tell where ${symbol} ends (${len} bytes)`);
    const chunks: Buffer[] = [];
    for (let off = 0; off < len; off += 1024)
      chunks.push(await this.gdb!.readMemory(start + BigInt(off), Math.min(1024, len - off)));
    const code = Buffer.concat(chunks);
    let site: bigint | undefined;
    for (let i = 0; i + 5 <= code.length; i++) {
      if (code[i] !== 0xe8) continue;
      const next = start + BigInt(i + 5);
      if (next + BigInt(code.readInt32LE(i + 1)) === target) site = next;
    }
    if (site === undefined)
      throw new InfraError(
        `hold: ${symbol} has no direct call of ${callee} in this kernel (inlined, or called through another function)`,
      );
    return site;
  }

  /** Stop every vCPU (the target runs, wholly or in part). */
  private async interrupt(): Promise<void> {
    const gdb = this.gdb!;
    try {
      await gdb.interrupt(this.opts.gdbTimeoutMs ?? 5000);
    } catch (e) {
      // Not answered: the held vCPU may stay stopped, and the case cannot
      // go on as the scenario says. An error, never a hang.
      this.keepTranscript();
      throw new InfraError(`hold: the gdbstub did not stop the guest to end the hold (${errorMessage(e)})`);
    }
  }

  /** Detach: QEMU removes every breakpoint and resumes every vCPU. */
  private async detach(): Promise<void> {
    const gdb = this.gdb;
    if (!gdb) return;
    await gdb.detach();
    this.keepTranscript();
    gdb.close();
    this.gdb = undefined;
  }

  /** The step finished without the point being hit: the guest goes on, so the breakpoint must not stay behind. */
  private async release(): Promise<void> {
    const gdb = this.gdb;
    if (!gdb || gdb.closed) return;
    await this.interrupt();
    await this.detach();
  }

  private keepTranscript(): void {
    if (this.gdb) this.transcript.push(...this.gdb.transcript.toText().trimEnd().split('\n').filter(Boolean));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.gdb) {
      this.keepTranscript();
      this.gdb.close();
      this.gdb = undefined;
    }
  }
}

/** One gdbstub connection per case, the kernel's symbols looked up once. */
export function gdbHoldDriverFactory(symbols: () => Promise<SymbolTable>, opts: GdbHoldOptions = {}) {
  return async (machine: Machine): Promise<GdbHoldDriver> => new GdbHoldDriver(machine, await symbols(), opts);
}
