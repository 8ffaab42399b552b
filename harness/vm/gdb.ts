import { createConnection, type Socket } from 'node:net';
import { InfraError } from '../util/errors.ts';

/** GDB remote protocol failures keep the packet sent and what came back. */
export class GdbError extends InfraError {
  constructor(message: string, readonly sent?: string, readonly received?: string) {
    super(message);
  }
}
export class GdbTimeoutError extends GdbError {}
export class GdbDisconnectedError extends GdbError {}

export interface StopReply {
  signal: number;
  raw: string;
}

export function checksum(data: string): string {
  let s = 0;
  for (let i = 0; i < data.length; i++) s = (s + data.charCodeAt(i)) & 0xff;
  return s.toString(16).padStart(2, '0');
}

/** Escape '#', '$', '}' and '*' as the protocol requires. */
export function escapeBinary(data: string): string {
  return data.replace(/[#$}*]/g, (c) => `}${String.fromCharCode(c.charCodeAt(0) ^ 0x20)}`);
}

/** Undo escaping and run-length encoding ("0* " = "0" repeated 3 more times). */
export function decodePayload(p: string): string {
  let out = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '}') out += String.fromCharCode(p.charCodeAt(++i) ^ 0x20);
    else if (c === '*') {
      const n = p.charCodeAt(++i) - 29;
      out += out.at(-1)!.repeat(n);
    } else out += c;
  }
  return out;
}

/**
 * A client for QEMU's gdbstub (GDB remote serial protocol) over a unix
 * socket: software breakpoints, continue, stop replies, interrupt, registers,
 * memory, detach. One request at a time; stop replies after `continue`
 * arrive asynchronously and are awaited with `waitStop`.
 */
export class GdbClient {
  private socket?: Socket;
  private buf = '';
  private packets: string[] = [];
  private waiters: Array<(p: string) => void> = [];
  private closed = false;
  readonly transcript: string[] = [];

  async connect(path: string): Promise<void> {
    const s = createConnection(path);
    this.socket = s;
    s.setEncoding('latin1');
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    s.on('data', (d: string) => this.onData(d));
    s.on('close', () => {
      this.closed = true;
      for (const w of this.waiters) w('\u0000closed');
      this.waiters = [];
    });
    s.on('error', () => {});
    // QEMU stops the guest when a debugger attaches and may announce it with
    // an unsolicited stop reply ("T02thread:01;") before answering anything.
    this.send('qSupported:swbreak+;hwbreak+');
    let sup = await this.next(10_000, 'qSupported');
    if (/^[ST][0-9a-fA-F]{2}/.test(sup)) {
      this.attachStop = parseStop(sup);
      sup = await this.next(10_000, 'qSupported');
    }
    // No-ack mode halves the round trips where the stub offers it.
    if (sup.includes('QStartNoAckMode+')) {
      await this.request('QStartNoAckMode');
      this.noAck = true;
    }
  }

  private noAck = false;
  /** The stop QEMU reported when we attached, if it sent one. */
  attachStop?: StopReply;

  private onData(d: string): void {
    this.buf += d;
    for (;;) {
      // Acks and naks from the stub.
      while (this.buf[0] === '+' || this.buf[0] === '-') this.buf = this.buf.slice(1);
      const start = this.buf.indexOf('$');
      if (start < 0) {
        this.buf = '';
        return;
      }
      const hash = this.buf.indexOf('#', start);
      if (hash < 0 || this.buf.length < hash + 3) return;
      const payload = this.buf.slice(start + 1, hash);
      const cs = this.buf.slice(hash + 1, hash + 3);
      this.buf = this.buf.slice(hash + 3);
      if (!this.noAck) this.socket?.write(checksum(payload) === cs.toLowerCase() ? '+' : '-');
      if (checksum(payload) !== cs.toLowerCase()) continue;
      const decoded = decodePayload(payload);
      this.transcript.push(`< ${decoded.slice(0, 200)}`);
      const w = this.waiters.shift();
      if (w) w(decoded);
      else this.packets.push(decoded);
    }
  }

  private next(timeoutMs: number, sent: string): Promise<string> {
    const p = this.packets.shift();
    if (p !== undefined) return Promise.resolve(p);
    if (this.closed) return Promise.reject(new GdbDisconnectedError('gdbstub connection closed', sent));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new GdbTimeoutError(`gdbstub: no reply to "${sent}" within ${timeoutMs} ms`, sent));
      }, timeoutMs);
      const waiter = (pkt: string) => {
        clearTimeout(timer);
        if (pkt === '\u0000closed') reject(new GdbDisconnectedError('gdbstub connection closed', sent));
        else resolve(pkt);
      };
      this.waiters.push(waiter);
    });
  }

  private send(data: string): void {
    if (this.closed) throw new GdbDisconnectedError('gdbstub connection closed', data);
    this.transcript.push(`> ${data}`);
    const esc = escapeBinary(data);
    this.socket!.write(`$${esc}#${checksum(esc)}`);
  }

  async request(data: string, timeoutMs = 10_000): Promise<string> {
    this.send(data);
    const reply = await this.next(timeoutMs, data);
    if (/^E[0-9a-fA-F]{2}$/.test(reply)) throw new GdbError(`gdbstub refused "${data}": ${reply}`, data, reply);
    return reply;
  }

  /** Stop reason of the halted target. */
  async haltReason(): Promise<StopReply> {
    return parseStop(await this.request('?'));
  }

  async insertBreakpoint(addr: bigint, kind: 'sw' | 'hw' = 'sw'): Promise<void> {
    const r = await this.request(`${kind === 'sw' ? 'Z0' : 'Z1'},${addr.toString(16)},1`);
    if (r !== 'OK') throw new GdbError(`breakpoint at 0x${addr.toString(16)} not accepted: "${r}"`, `Z0,${addr.toString(16)},1`, r);
  }

  async removeBreakpoint(addr: bigint, kind: 'sw' | 'hw' = 'sw'): Promise<void> {
    await this.request(`${kind === 'sw' ? 'z0' : 'z1'},${addr.toString(16)},1`);
  }

  /** Resume; the stop reply comes later through waitStop(). */
  continue(): void {
    this.send('c');
  }

  /**
   * Continue from a stop at one of our breakpoints. The stub does not step
   * over it by itself (continuing would hit it again at once), so do what
   * gdb does: remove it, single-step, put it back, continue.
   */
  async continueFrom(breakpoints: readonly bigint[], rip: bigint): Promise<void> {
    if (breakpoints.includes(rip)) {
      await this.removeBreakpoint(rip);
      this.send('s');
      await this.waitStop(10_000);
      await this.insertBreakpoint(rip);
    }
    this.continue();
  }

  waitStop(timeoutMs: number): Promise<StopReply> {
    return this.next(timeoutMs, 'c').then(parseStop);
  }

  /** Ctrl-C: the running target stops and sends a stop reply. */
  async interrupt(timeoutMs = 10_000): Promise<StopReply> {
    this.transcript.push('> ^C');
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

  close(): void {
    this.socket?.destroy();
  }
}

function leHex(h: string): bigint {
  const bytes = Buffer.from(h, 'hex');
  return bytes.length === 8 ? bytes.readBigUInt64LE(0) : 0n;
}

export function parseStop(p: string): StopReply {
  if (!/^[ST][0-9a-fA-F]{2}/.test(p)) throw new GdbError(`not a stop reply: "${p}"`, undefined, p);
  return { signal: parseInt(p.slice(1, 3), 16), raw: p };
}
