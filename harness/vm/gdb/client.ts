import { SocketChannel } from '../channel.ts';
import {
  encodePacket,
  isStopReply,
  leHex,
  PacketParser,
  parseStop,
  parseThreadList,
  threadId,
  type StopReply,
} from './packet.ts';
import { GdbDisconnectedError, GdbError, GdbProtocolError, GdbStateError, GdbTimeoutError } from './errors.ts';

export type { StopReply } from './packet.ts';

/** Whether the guest's vCPUs run: requests are only heard while it is stopped. */
export type TargetState = 'stopped' | 'running';

/**
 * The stop channel: stop replies that arrive while the target runs (after
 * `c`), apart from the replies to requests. A stop nobody waits for yet is
 * kept; waiters fail when the connection drops.
 */
class StopChannel {
  private queue: StopReply[] = [];
  private waiters: Array<{ resolve: (s: StopReply) => void; reject: (e: Error) => void }> = [];
  private closedWith?: Error;

  push(s: StopReply): void {
    const w = this.waiters.shift();
    if (w) w.resolve(s);
    else this.queue.push(s);
  }

  next(): Promise<StopReply> {
    const s = this.queue.shift();
    if (s) return Promise.resolve(s);
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Drop the waiters; each fails, so that whatever bounds its wait (a timer) is released too. */
  forget(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) x.reject(new GdbStateError('gdbstub: the wait for a stop was given up'));
  }

  close(e: Error): void {
    this.closedWith = e;
    for (const w of this.waiters) w.reject(e);
    this.waiters = [];
  }
}

/**
 * A client for QEMU's gdbstub over a unix socket: software breakpoints,
 * continue and single-step, stop replies, interrupt, registers, memory.
 * Requests go one at a time and are only sent while the target is stopped;
 * the stop replies of a running target arrive on their own channel
 * (`waitStop`), so a late stop is never mistaken for a reply.
 */
export class GdbClient extends SocketChannel {
  protected readonly protocol = 'gdbstub';
  private readonly parser = new PacketParser();
  private readonly stops = new StopChannel();
  private noAck = false;
  private seq = 0;
  private target: TargetState = 'stopped';
  /** While qSupported is in flight: a stop reply then is QEMU announcing the attach, not the answer. */
  private attaching = false;
  /** The stop QEMU reported when we attached, if it sent one. */
  attachStop?: StopReply;

  protected disconnected(what: string | undefined, cause: Error | undefined): Error {
    return new GdbDisconnectedError(
      `gdbstub connection closed${what ? ` while waiting for ${what}` : ''}`,
      what,
      undefined,
      cause ? { cause } : undefined,
    );
  }

  protected stateError(message: string): Error {
    return new GdbStateError(message);
  }

  get targetState(): TargetState {
    return this.target;
  }

  /** Attach: QEMU stops the guest when a debugger attaches. */
  async connect(path: string, timeoutMs = 10_000): Promise<void> {
    await this.open(path, timeoutMs, undefined, 'latin1');
    this.markRunning();
    // QEMU may announce the attach with an unsolicited stop reply
    // ("T02thread:01;") before answering anything: route() keeps it aside.
    this.attaching = true;
    let sup: string;
    try {
      sup = await this.request('qSupported:swbreak+;hwbreak+', timeoutMs);
    } finally {
      this.attaching = false;
    }
    // No-ack mode halves the round trips where the stub offers it.
    if (sup.includes('QStartNoAckMode+')) {
      await this.request('QStartNoAckMode');
      this.noAck = true;
    }
  }

  protected onData(chunk: string): void {
    for (const f of this.parser.push(chunk)) {
      if (f.kind !== 'packet') continue;
      if (!this.noAck) this.socket?.write(f.valid ? '+' : '-');
      if (!f.valid) {
        this.transcript.received(f.raw);
        continue; // the stub resends it after our '-'
      }
      this.transcript.received(f.payload.length > 400 ? `${f.payload.slice(0, 400)}...` : f.payload);
      this.route(f.payload);
    }
  }

  /** A packet answers the request in flight; with none in flight, a stop reply belongs to the stop channel. */
  private route(payload: string): void {
    if (this.attaching && isStopReply(payload)) {
      this.attachStop = parseStop(payload);
      return;
    }
    const key = [...this.pending.keys()][0];
    if (key !== undefined) {
      this.settle(key, payload);
      return;
    }
    if (isStopReply(payload)) {
      this.target = 'stopped';
      this.stops.push(parseStop(payload));
    }
    // Anything else unasked for is kept in the transcript only.
  }

  protected override onClosed(cause: Error | undefined): void {
    this.stops.close(
      new GdbDisconnectedError(
        'gdbstub connection closed while waiting for a stop',
        undefined,
        undefined,
        cause ? { cause } : undefined,
      ),
    );
  }

  private request0(key: number, what: string, send: () => void, timeoutMs: number): Promise<string> {
    return this.track<string>(
      key,
      what,
      send,
      timeoutMs,
      () => new GdbTimeoutError(`gdbstub: no reply to "${what}" within ${timeoutMs} ms`, what),
    );
  }

  /**
   * Send one packet and wait for its reply. Refused while the target runs
   * or while another request is in flight (the protocol has no ids).
   */
  async request(data: string, timeoutMs = 10_000): Promise<string> {
    this.ensureRunning(`"${data}"`);
    if (this.target === 'running')
      throw new GdbStateError(
        `cannot send "${data}": the target is running (QEMU drops packets sent while the guest runs)`,
        data,
      );
    if (this.pending.size)
      throw new GdbStateError(
        `cannot send "${data}": "${[...this.pending.values()][0]!.what}" is still waiting for its reply`,
        data,
      );
    const reply = await this.request0(++this.seq, data, () => this.write(encodePacket(data), { text: data }), timeoutMs);
    if (/^E[0-9a-fA-F]{2}$/.test(reply)) throw new GdbError(`gdbstub refused "${data}": ${reply}`, data, reply);
    if (data !== '?' && data !== 's' && isStopReply(reply)) {
      throw new GdbProtocolError(`a stop reply where the answer to "${data}" was due`, reply);
    }
    return reply;
  }

  /** Stop reason of the halted target. */
  async haltReason(): Promise<StopReply> {
    return parseStop(await this.request('?'));
  }

  async insertBreakpoint(addr: bigint, kind: 'sw' | 'hw' = 'sw'): Promise<void> {
    const pkt = `${kind === 'sw' ? 'Z0' : 'Z1'},${addr.toString(16)},1`;
    const r = await this.request(pkt);
    if (r !== 'OK') throw new GdbError(`breakpoint at 0x${addr.toString(16)} not accepted: "${r}"`, pkt, r);
  }

  async removeBreakpoint(addr: bigint, kind: 'sw' | 'hw' = 'sw'): Promise<void> {
    await this.request(`${kind === 'sw' ? 'z0' : 'z1'},${addr.toString(16)},1`);
  }

  /** Resume; the stop reply comes later through waitStop(). */
  continue(): void {
    this.ensureRunning('"c"');
    if (this.target === 'running') throw new GdbStateError('cannot continue: the target is already running', 'c');
    this.target = 'running';
    this.write(encodePacket('c'), { text: 'c' });
  }

  /**
   * Resume only these threads (vCPUs): `vCont;c:T1;c:T2`. QEMU's gdbstub
   * leaves a vCPU that is given no action stopped, so the others run while
   * it is held. The stop reply (an interrupt, a breakpoint) comes through
   * waitStop() as after `c`.
   */
  continueThreads(threads: readonly number[]): void {
    if (!threads.length) throw new GdbStateError('vCont: no thread to resume (an empty vCont would resume every vCPU)', 'vCont');
    const pkt = `vCont${threads.map((t) => `;c:${threadId(t)}`).join('')}`;
    this.ensureRunning(`"${pkt}"`);
    if (this.target === 'running') throw new GdbStateError(`cannot send "${pkt}": the target is already running`, pkt);
    this.target = 'running';
    this.write(encodePacket(pkt), { text: pkt });
  }

  /** Every thread (vCPU) of the target: `qfThreadInfo`, then `qsThreadInfo` until "l". */
  async threads(): Promise<number[]> {
    const out: number[] = [];
    for (let reply = await this.request('qfThreadInfo'); ; reply = await this.request('qsThreadInfo')) {
      const ids = parseThreadList(reply);
      if (!ids.length) return out;
      out.push(...ids);
      if (out.length > 4096) throw new GdbProtocolError('a thread list that never ends', reply);
    }
  }

  /** The thread the stub reports as current (`qC` -> "QC02"): after a stop, the vCPU that stopped. */
  async currentThread(): Promise<number | undefined> {
    const r = await this.request('qC');
    const m = /^QC(?:p[0-9a-fA-F]+\.)?([0-9a-fA-F]+)$/.exec(r);
    return m ? parseInt(m[1]!, 16) : undefined;
  }

  /** One instruction; the stub answers with a stop reply. */
  async step(timeoutMs = 10_000): Promise<StopReply> {
    return parseStop(await this.request('s', timeoutMs));
  }

  /**
   * Continue from a stop at one of our breakpoints. The stub does not step
   * over it by itself (continuing would hit it again at once), so do what
   * gdb does: remove it, single-step, put it back, continue.
   */
  async continueFrom(breakpoints: readonly bigint[], rip: bigint): Promise<void> {
    if (breakpoints.includes(rip)) {
      await this.removeBreakpoint(rip);
      await this.step();
      await this.insertBreakpoint(rip);
    }
    this.continue();
  }

  /** The next stop of the running target. */
  waitStop(timeoutMs: number): Promise<StopReply> {
    return new Promise<StopReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.stops.forget();
        reject(new GdbTimeoutError(`gdbstub: the target did not stop within ${timeoutMs} ms`, 'c'));
      }, timeoutMs);
      this.stops.next().then(
        (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /**
   * Give up the waits for a stop (a waitStop raced against something else
   * that won): otherwise the next stop, an interrupt's, would go to a
   * waiter nobody listens to any more.
   */
  abandonStopWaits(): void {
    this.stops.forget();
  }

  /** Ctrl-C: the running target stops and sends a stop reply. */
  async interrupt(timeoutMs = 10_000): Promise<StopReply> {
    this.ensureRunning('an interrupt');
    this.transcript.note('^C');
    this.socket!.write('\x03');
    return this.waitStop(timeoutMs);
  }

  /** x86_64 registers from 'g': rax rbx rcx rdx rsi rdi rbp rsp r8..r15 rip eflags ... (little-endian). */
  async registers(): Promise<{ rip: bigint; rsp: bigint }> {
    const g = await this.request('g');
    const reg = (i: number) => leHex(g.slice(i * 16, i * 16 + 16));
    return { rsp: reg(7), rip: reg(16) };
  }

  async readMemory(addr: bigint, len: number): Promise<Buffer> {
    const r = await this.request(`m${addr.toString(16)},${len.toString(16)}`);
    return Buffer.from(r, 'hex');
  }

  /** Detach: QEMU resumes the guest. */
  async detach(): Promise<void> {
    if (this.closed) return;
    await this.request('D', 5000).catch(() => {});
  }
}
