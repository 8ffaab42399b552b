import { createConnection, type Socket } from 'node:net';
import type { Accel } from '../doctor/accel.ts';
import { GdbDisconnectedError, GdbError, GdbProtocolError, GdbStateError, GdbTimeoutError, GdbUnsupportedError } from './gdb-errors.ts';
import { expandRunLength, frame, fromHex, PacketReader, unescapeBinary, type WireEvent } from './gdb-packet.ts';
import { RegisterLayout } from './gdb-registers.ts';
import { formatThreadId, isStopReply, parseStopReply, parseThreadId, type StopReply, type ThreadId } from './gdb-stop.ts';

export { GdbError, GdbProtocolError, GdbUnsupportedError, GdbTimeoutError, GdbDisconnectedError, GdbStateError } from './gdb-errors.ts';
export type { StopReply, ThreadId } from './gdb-stop.ts';

/**
 * `stopped`: packets may be sent. `running`: only an interrupt may be sent
 * (QEMU pauses the VM on any byte and drops it). `closed`: detached or the
 * socket went away.
 */
export type TargetState = 'stopped' | 'running' | 'closed';

/** Z0 (software: QEMU patches int3 under KVM, checks the pc under TCG) or Z1 (hardware: debug registers under KVM, max 4). */
export type BreakpointKind = 'sw' | 'hw';

/**
 * Measured with QEMU 7.2: under TCG both kinds work at any time. Under KVM a
 * software breakpoint needs the address mapped when it is inserted (Z0 on a
 * kernel address before the guest enabled paging answers E22) and writes an
 * int3 into guest memory; hardware breakpoints take effect whatever the
 * guest's state, so KVM uses those.
 */
export function breakpointKindFor(accel: Accel): BreakpointKind {
  return accel === 'kvm' ? 'hw' : 'sw';
}

export interface GdbConnectOptions {
  timeoutMs?: number;
  /** Per-request reply timeout (default 10 s). */
  requestTimeoutMs?: number;
}

/** Packets that answer with a stop reply rather than a plain reply. */
const resumePackets = /^(?:[cCsS]|vCont;)/;
const maxRetransmits = 3;

interface Pending {
  sent: string;
  resolve: (payload: string) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

interface StopWaiter {
  resolve: (s: StopReply) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

/**
 * Client for QEMU's gdbstub (GDB remote serial protocol) on a unix socket.
 *
 * One request at a time, in strict request/reply order while the target is
 * stopped. Resuming (`continue`, `step`) switches to `running`; the stop
 * reply that ends it arrives whenever the guest hits a breakpoint, and
 * `waitStop` returns it. Attaching pauses the VM (QEMU announces that with an
 * unsolicited `T02`), and closing the socket without `detach()` leaves it
 * paused with every breakpoint still inserted.
 */
export class GdbClient implements AsyncDisposable {
  private socket?: Socket;
  private readonly reader = new PacketReader();
  private pending?: Pending;
  /** Frame of the last packet sent, until the stub acked it: resent on a nak. */
  private unacked?: { frame: string; tries: number };
  private badFrames = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private stopWaiters: StopWaiter[] = [];
  private insertedBps = new Map<bigint, BreakpointKind>();
  private currentThread?: ThreadId;
  private _state: TargetState = 'closed';
  private _lastStop?: StopReply;
  private noAck = false;
  private requestTimeoutMs = 10_000;
  /** Set when a request timed out: the next reply could belong to it, so the stream can no longer be trusted. */
  private desynced?: string;

  /** Every packet both ways, decoded, in order: `> c`, `< T05thread:01;`, `! nak`. Kept with a case's artefacts. */
  readonly transcript: string[] = [];
  /** Console output (`O` packets) the stub sent while the target ran. */
  readonly output: string[] = [];
  /** The stub's qSupported features: `name` to `true`/`false` or a value (`PacketSize` to "1000"). */
  readonly features = new Map<string, string | boolean>();
  layout: RegisterLayout = RegisterLayout.x86_64();
  /** The stop QEMU announced when we attached, if it sent one. */
  attachStop?: StopReply;

  static async connect(path: string, opts: GdbConnectOptions = {}): Promise<GdbClient> {
    const c = new GdbClient();
    await c.connect(path, opts);
    return c;
  }

  get state(): TargetState {
    return this._state;
  }

  /** The stop reply that put the target in its current stopped state. */
  get lastStop(): StopReply | undefined {
    return this._lastStop;
  }

  get multiprocess(): boolean {
    return this.features.get('multiprocess') === true;
  }

  /** Breakpoints this client inserted and has not removed. */
  get breakpoints(): ReadonlyMap<bigint, BreakpointKind> {
    return this.insertedBps;
  }

  async connect(path: string, opts: GdbConnectOptions = {}): Promise<void> {
    if (this.socket) throw new GdbStateError('already connected');
    this.requestTimeoutMs = opts.requestTimeoutMs ?? this.requestTimeoutMs;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const s = createConnection(path);
    this.socket = s;
    s.setEncoding('latin1');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.destroy();
        reject(new GdbTimeoutError(`gdbstub at ${path}: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(new GdbDisconnectedError(`gdbstub at ${path}: ${e.message}`));
      });
    });
    s.on('data', (d: string) => this.onData(d));
    s.on('error', () => {});
    s.on('close', () => this.onClose());
    // Attaching pauses the VM: from here on the target is stopped.
    this._state = 'stopped';
    // multiprocess+ because QEMU keeps that setting from an earlier
    // connection anyway (then `D` without a pid is refused with E22): asking
    // for it every time makes the dialect the same on every connection.
    const sup = await this.request(`qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386`, timeoutMs);
    for (const f of sup.split(';')) {
      if (!f) continue;
      const eq = f.indexOf('=');
      if (eq >= 0) this.features.set(f.slice(0, eq), f.slice(eq + 1));
      else this.features.set(f.replace(/[+\-?]$/, ''), f.endsWith('+'));
    }
    if (this.features.get('QStartNoAckMode') === true) {
      await this.request('QStartNoAckMode');
      this.noAck = true;
    }
    if (this.features.get('qXfer:features:read') === true) this.layout = await this.readTargetDescription();
    // QEMU answers `?` AND removes every breakpoint: this also clears any
    // left by an earlier connection that closed without detaching.
    this._lastStop = await this.haltReason();
    if (this._lastStop.thread) this.currentThread = this._lastStop.thread;
  }

  // ---- wire ----------------------------------------------------------------

  private onData(d: string): void {
    for (const ev of this.reader.push(d)) this.onEvent(ev);
  }

  private onEvent(ev: WireEvent): void {
    if (ev.type === 'ack') {
      this.unacked = undefined;
      return;
    }
    if (ev.type === 'nak') {
      this.transcript.push('! nak');
      const u = this.unacked;
      if (!u) return;
      if (++u.tries > maxRetransmits) {
        this.unacked = undefined;
        this.failPending((sent) => new GdbProtocolError(`gdbstub rejected the packet ${maxRetransmits + 1} times (nak)`, sent));
        return;
      }
      this.socket?.write(u.frame);
      return;
    }
    if (ev.type !== 'packet' || ev.notification) return;
    if (!ev.checksumOk) {
      this.transcript.push(`! bad checksum: ${ev.raw.slice(0, 200)}`);
      if (this.noAck || ++this.badFrames > maxRetransmits) {
        this.failPending((sent) => new GdbProtocolError('reply failed its checksum', sent, ev.raw));
        return;
      }
      this.socket?.write('-');
      return;
    }
    this.badFrames = 0;
    if (!this.noAck) this.socket?.write('+');
    // A reply means the stub got our packet even if its '+' went missing.
    this.unacked = undefined;
    let payload: string;
    try {
      payload = expandRunLength(ev.payload);
    } catch (e) {
      this.failPending(() => e as Error);
      return;
    }
    this.transcript.push(`< ${payload.length > 240 ? `${payload.slice(0, 240)}...(${payload.length})` : payload}`);
    this.route(payload);
  }

  private route(payload: string): void {
    const p = this.pending;
    const stopLike = isStopReply(payload);
    if (p && !(stopLike && !p.sent.startsWith('?'))) {
      this.pending = undefined;
      clearTimeout(p.timer);
      p.resolve(payload);
      return;
    }
    if (stopLike) {
      // While the target runs: a breakpoint, the end of a step, an
      // interrupt, a QMP stop. While stopped: QEMU's announcement that the
      // attach paused the VM, which may overtake our first reply.
      let stop: StopReply;
      try {
        stop = parseStopReply(payload);
      } catch {
        return;
      }
      this.onStop(stop);
      return;
    }
    if (this._state === 'running' && /^O(?:[0-9a-fA-F]{2})+$/.test(payload)) {
      this.output.push(Buffer.from(payload.slice(1), 'hex').toString('latin1'));
      return;
    }
    this.transcript.push(`! unexpected packet ignored: ${payload.slice(0, 200)}`);
  }

  private onStop(stop: StopReply): void {
    if (stop.kind !== 'stopped') {
      this._state = 'closed';
    } else {
      this._state = 'stopped';
      if (stop.thread) this.currentThread = stop.thread;
      if (this._lastStop === undefined && !this.attachStop) this.attachStop = stop;
    }
    this._lastStop = stop;
    const waiters = this.stopWaiters;
    this.stopWaiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      if (stop.kind === 'stopped') w.resolve(stop);
      else w.reject(new GdbDisconnectedError(`the target ended (${stop.raw}) while waiting for a stop`, 'c', stop.raw));
    }
  }

  private onClose(): void {
    this._state = 'closed';
    this.failPending((sent) => new GdbDisconnectedError('gdbstub connection closed with a request outstanding', sent, this.reader.pending || undefined));
    const waiters = this.stopWaiters;
    this.stopWaiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(new GdbDisconnectedError('gdbstub connection closed while the target was running', 'c'));
    }
  }

  private failPending(make: (sent: string) => Error): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    p.reject(make(p.sent));
  }

  private write(payload: string): void {
    const f = frame(payload);
    this.transcript.push(`> ${payload}`);
    if (!this.noAck) this.unacked = { frame: f, tries: 0 };
    this.socket!.write(f);
  }

  private assertCanSend(payload: string): void {
    if (this._state === 'closed' || !this.socket || this.socket.destroyed) throw new GdbDisconnectedError('gdbstub connection is closed', payload);
    if (this.desynced) throw new GdbStateError(`gdbstub stream out of step since "${this.desynced}" timed out; reconnect`, payload);
    if (this._state === 'running') throw new GdbStateError('the target is running: stop it first (interrupt) or QEMU drops the packet and pauses the VM', payload);
  }

  // ---- requests ------------------------------------------------------------

  /**
   * Send one packet and return its (run-length expanded) reply. `Exx` becomes
   * GdbProtocolError, an empty reply (not supported) GdbUnsupportedError.
   * Requests queue behind each other; the target must be stopped.
   */
  request(payload: string, timeoutMs = this.requestTimeoutMs): Promise<string> {
    const run = () => this.rawRequest(payload, timeoutMs);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  private rawRequest(payload: string, timeoutMs: number): Promise<string> {
    if (resumePackets.test(payload)) return Promise.reject(new GdbStateError('resume packets go through continue()/step()', payload));
    this.assertCanSend(payload);
    return new Promise<string>((resolve, reject) => {
      const pending: Pending = {
        sent: payload,
        resolve: (reply) => {
          if (/^E[0-9a-fA-F]{2}$/.test(reply)) reject(new GdbProtocolError(`gdbstub refused "${payload}"`, payload, reply));
          else if (reply === '' && payload !== 'D' && !payload.startsWith('D;')) reject(new GdbUnsupportedError(`gdbstub does not support "${payload}"`, payload, reply));
          else resolve(reply);
        },
        reject,
      };
      pending.timer = setTimeout(() => {
        if (this.pending !== pending) return;
        this.pending = undefined;
        this.desynced = payload;
        reject(new GdbTimeoutError(`gdbstub: no reply within ${timeoutMs} ms`, payload, this.reader.pending || undefined));
      }, timeoutMs);
      this.pending = pending;
      this.write(payload);
    });
  }

  /**
   * Why the target is stopped (`?`). QEMU also removes all breakpoints when
   * it answers this (it takes `?` for a debugger's first contact), so the
   * client forgets its own as well.
   */
  async haltReason(): Promise<StopReply> {
    const stop = parseStopReply(await this.request('?'), '?');
    this.insertedBps.clear();
    return stop;
  }

  /** vCPU thread ids (qfThreadInfo / qsThreadInfo). */
  async threads(): Promise<ThreadId[]> {
    const out: ThreadId[] = [];
    for (let r = await this.request('qfThreadInfo'); r.startsWith('m'); r = await this.request('qsThreadInfo')) {
      for (const t of r.slice(1).split(',')) if (t) out.push(parseThreadId(t));
    }
    return out;
  }

  /**
   * Select the thread for register/memory access (`Hg`) and for step (`Hc`).
   * QEMU already points both at the vCPU that reported the last stop, so
   * this is needed only to look at another vCPU.
   */
  async selectThread(t: ThreadId): Promise<void> {
    const id = formatThreadId(t, this.multiprocess);
    await this.request(`Hg${id}`);
    await this.request(`Hc${id}`);
    this.currentThread = t;
  }

  /** The thread of the last stop (QEMU's default for register access). */
  get thread(): ThreadId | undefined {
    return this.currentThread;
  }

  async insertBreakpoint(addr: bigint, kind: BreakpointKind = 'sw'): Promise<void> {
    const pkt = `${kind === 'sw' ? 'Z0' : 'Z1'},${addr.toString(16)},1`;
    const r = await this.request(pkt);
    if (r !== 'OK') throw new GdbProtocolError(`breakpoint at 0x${addr.toString(16)} not accepted`, pkt, r);
    this.insertedBps.set(addr, kind);
  }

  async removeBreakpoint(addr: bigint, kind?: BreakpointKind): Promise<void> {
    const k = kind ?? this.insertedBps.get(addr) ?? 'sw';
    const pkt = `${k === 'sw' ? 'z0' : 'z1'},${addr.toString(16)},1`;
    const r = await this.request(pkt);
    if (r !== 'OK') throw new GdbProtocolError(`breakpoint at 0x${addr.toString(16)} not removed`, pkt, r);
    this.insertedBps.delete(addr);
  }

  /** All registers `g` carries (up to 64 bits each), by name. */
  async readRegisters(): Promise<Map<string, bigint>> {
    return this.layout.decodeG(await this.request('g'));
  }

  /** rip and rsp in one `g` round trip. */
  async registers(): Promise<{ rip: bigint; rsp: bigint }> {
    const regs = await this.readRegisters();
    const rip = regs.get('rip');
    const rsp = regs.get('rsp');
    if (rip === undefined || rsp === undefined) throw new GdbProtocolError('register reply too short for rip/rsp', 'g');
    return { rip, rsp };
  }

  /** One register: `p` when the target description was read (QEMU answers `p` only then), else from `g`. */
  async readRegister(name: string): Promise<bigint> {
    const info = this.layout.get(name);
    if (this.layout.source === 'target-xml') {
      const hex = await this.request(`p${info.regnum.toString(16)}`);
      return fromHex(hex, `p${info.regnum.toString(16)}`).reduceRight((v, b) => (v << 8n) | BigInt(b), 0n);
    }
    const v = (await this.readRegisters()).get(name);
    if (v === undefined) throw new GdbProtocolError(`register ${name} not in the g reply`, 'g');
    return v;
  }

  async readPc(): Promise<bigint> {
    return this.readRegister('rip');
  }

  /** Guest virtual memory, in chunks that fit the stub's packet size. */
  async readMemory(addr: bigint, len: number): Promise<Buffer> {
    const packetSize = parseInt(String(this.features.get('PacketSize') ?? '400'), 16) || 0x400;
    const chunk = Math.max(16, Math.floor((packetSize - 8) / 2));
    const parts: Buffer[] = [];
    for (let off = 0; off < len; off += chunk) {
      const n = Math.min(chunk, len - off);
      const pkt = `m${(addr + BigInt(off)).toString(16)},${n.toString(16)}`;
      const data = fromHex(await this.request(pkt), pkt);
      if (data.length !== n) throw new GdbProtocolError(`asked for ${n} bytes, got ${data.length}`, pkt);
      parts.push(data);
    }
    return Buffer.concat(parts);
  }

  async readU64(addr: bigint): Promise<bigint> {
    return (await this.readMemory(addr, 8)).readBigUInt64LE(0);
  }

  /** A qXfer object, reassembled from its `m`/`l` chunks and unescaped. */
  async xferRead(object: string, annex: string): Promise<string> {
    let out = '';
    for (;;) {
      const r = await this.request(`qXfer:${object}:read:${annex}:${out.length.toString(16)},ffb`);
      if (r[0] !== 'm' && r[0] !== 'l') throw new GdbProtocolError(`bad qXfer reply`, `qXfer:${object}:read:${annex}`, r);
      out += unescapeBinary(r.slice(1));
      if (r[0] === 'l') return out;
    }
  }

  private async readTargetDescription(): Promise<RegisterLayout> {
    const docs = new Map<string, string>();
    const fetch = async (name: string) => {
      if (docs.has(name)) return;
      const xml = await this.xferRead('features', name);
      docs.set(name, xml);
      for (const inc of RegisterLayout.includes(xml)) await fetch(inc);
    };
    await fetch('target.xml');
    return RegisterLayout.fromTargetXml(docs);
  }

  // ---- execution -----------------------------------------------------------

  /** Resume as is (`c`). A target stopped on one of our breakpoints hits it again at once: use resume(). */
  continue(): void {
    this.resumeWith('c');
  }

  private resumeWith(pkt: 'c' | 's'): void {
    if (this.pending) throw new GdbStateError('a request is still outstanding', pkt);
    this.assertCanSend(pkt);
    this._state = 'running';
    this.write(pkt);
  }

  /**
   * Continue from wherever the target stopped. QEMU does not step over a
   * breakpoint at the stop address by itself (a plain `c` reports the same
   * breakpoint again without executing anything), so do what gdb does:
   * remove it, single-step, re-insert, continue.
   */
  async resume(): Promise<void> {
    await this.stepOverOwnBreakpoint();
    this.continue();
  }

  /** Kept for callers that already know the pc: same as resume(). */
  async continueFrom(_breakpoints: readonly bigint[], _rip: bigint): Promise<void> {
    await this.resume();
  }

  /** Execute one instruction (interrupts stay masked while stepping: QEMU's default). */
  async step(timeoutMs = this.requestTimeoutMs): Promise<StopReply> {
    await this.queue;
    this.resumeWith('s');
    return this.waitStop(timeoutMs);
  }

  private async stepOverOwnBreakpoint(): Promise<void> {
    await this.queue;
    if (this._state !== 'stopped' || this.insertedBps.size === 0) return;
    const pc = await this.readPc();
    const kind = this.insertedBps.get(pc);
    if (kind === undefined) return;
    await this.removeBreakpoint(pc);
    await this.step();
    await this.insertBreakpoint(pc, kind);
  }

  /**
   * The stop that ends the current run. Resolves at once with lastStop when
   * the target is already stopped; every waiter gets the same stop.
   * No timeout when timeoutMs is undefined.
   */
  waitStop(timeoutMs?: number): Promise<StopReply> {
    if (this._state === 'stopped' && this._lastStop) return Promise.resolve(this._lastStop);
    if (this._state === 'closed') return Promise.reject(new GdbDisconnectedError('gdbstub connection is closed', 'c'));
    return new Promise((resolve, reject) => {
      const w: StopWaiter = { resolve, reject };
      if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
        w.timer = setTimeout(() => {
          this.stopWaiters = this.stopWaiters.filter((x) => x !== w);
          reject(new GdbTimeoutError(`target did not stop within ${timeoutMs} ms`, 'c'));
        }, timeoutMs);
      }
      this.stopWaiters.push(w);
    });
  }

  /**
   * Stop a running target (the 0x03 byte) and return its stop reply. On a
   * stopped target nothing is sent (QEMU ignores the byte then) and the
   * current stop comes back. A breakpoint hit racing the interrupt is the
   * stop you get.
   */
  async interrupt(timeoutMs = this.requestTimeoutMs): Promise<StopReply> {
    if (this._state === 'running') {
      this.transcript.push('> ^C');
      this.socket!.write('\x03');
    }
    return this.waitStop(timeoutMs);
  }

  /** Run fn with the target stopped, then leave it in the state it had (interrupting and resuming if it ran). */
  async whileStopped<T>(fn: () => Promise<T>): Promise<T> {
    const wasRunning = this._state === 'running';
    if (wasRunning) await this.interrupt();
    const r = await fn();
    if (wasRunning) await this.resume();
    return r;
  }

  /**
   * Detach: QEMU removes every breakpoint and resumes the guest. A running
   * target is interrupted first (a `D` sent to it would be dropped).
   */
  async detach(timeoutMs = 5000): Promise<void> {
    if (this._state === 'closed') return;
    try {
      if (this._state === 'running') await this.interrupt(timeoutMs);
      const pid = this.currentThread?.pid ?? 1;
      await this.request(this.multiprocess ? `D;${pid.toString(16)}` : 'D', timeoutMs);
      this.insertedBps.clear();
    } finally {
      this._state = 'closed';
      this.close();
    }
  }

  /** Drop the socket. The VM stays as it is: paused if it was stopped, breakpoints still inserted. */
  close(): void {
    if (this._state !== 'closed') this._state = 'closed';
    this.socket?.destroy();
    this.onClose();
  }

  /**
   * Close without detaching: disposal happens on the crash path, where the
   * guest must stay frozen at the point until QMP kills it. Detach explicitly
   * to let a guest run on.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}
