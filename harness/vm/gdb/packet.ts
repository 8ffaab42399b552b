import { GdbProtocolError } from './errors.ts';

/**
 * GDB remote serial protocol framing (gdb's "Remote Protocol" appendix):
 * a packet is `$payload#cs` with cs the modulo-256 sum of the payload's
 * bytes in two hex digits; `}` escapes `#$}*` (XOR 0x20); `*` is run-length
 * encoding of the previous character (count = next char - 29); `+`/`-`
 * acknowledge a packet unless no-ack mode was negotiated. The socket is read
 * as latin1 so one character is one byte.
 */
export function checksum(data: string): string {
  let s = 0;
  for (let i = 0; i < data.length; i++) s = (s + data.charCodeAt(i)) & 0xff;
  return s.toString(16).padStart(2, '0');
}

/** Escape '#', '$', '}' and '*' as the protocol requires. */
export function escapeBinary(data: string): string {
  return data.replace(/[#$}*]/g, (c) => `}${String.fromCharCode(c.charCodeAt(0) ^ 0x20)}`);
}

/** The bytes to send for a packet carrying `data`. */
export function encodePacket(data: string): string {
  const esc = escapeBinary(data);
  return `$${esc}#${checksum(esc)}`;
}

/** Undo escaping and run-length encoding ("0* " = "0" repeated 3 more times). */
export function decodePayload(p: string): string {
  let out = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '}') {
      if (i + 1 >= p.length) throw new GdbProtocolError('escape character at the end of a packet', p);
      out += String.fromCharCode(p.charCodeAt(++i) ^ 0x20);
    } else if (c === '*') {
      if (!out.length || i + 1 >= p.length) throw new GdbProtocolError('run-length marker without a character to repeat', p);
      const n = p.charCodeAt(++i) - 29;
      out += out.at(-1)!.repeat(n);
    } else out += c;
  }
  return out;
}

export type Frame =
  | { kind: 'ack' }
  | { kind: 'nak' }
  /** A packet: `payload` decoded (escapes and RLE undone); `valid` false when its checksum is wrong. */
  | { kind: 'packet'; payload: string; valid: boolean; raw: string }
  /** An asynchronous notification (`%...#cs`, non-stop mode); QEMU does not send them in all-stop mode. */
  | { kind: 'notification'; raw: string };

/**
 * Splits the byte stream from the stub into frames. A chunk may end inside
 * a packet; bytes outside any frame (noise) are dropped, as gdb does.
 */
export class PacketParser {
  private buf = '';

  push(chunk: string): Frame[] {
    this.buf += chunk;
    const out: Frame[] = [];
    for (;;) {
      const c = this.buf[0];
      if (c === undefined) break;
      if (c === '+' || c === '-') {
        out.push({ kind: c === '+' ? 'ack' : 'nak' });
        this.buf = this.buf.slice(1);
        continue;
      }
      if (c !== '$' && c !== '%') {
        const next = this.buf.search(/[$%+-]/);
        this.buf = next < 0 ? '' : this.buf.slice(next);
        continue;
      }
      const hash = this.buf.indexOf('#');
      if (hash < 0 || this.buf.length < hash + 3) break;
      const raw = this.buf.slice(0, hash + 3);
      const body = this.buf.slice(1, hash);
      const cs = this.buf.slice(hash + 1, hash + 3).toLowerCase();
      this.buf = this.buf.slice(hash + 3);
      if (c === '%') {
        out.push({ kind: 'notification', raw });
        continue;
      }
      const valid = checksum(body) === cs;
      out.push({ kind: 'packet', payload: valid ? decodePayload(body) : body, valid, raw });
    }
    return out;
  }

  /** Bytes received after the last complete frame. */
  get pending(): string {
    return this.buf;
  }
}

export interface StopReply {
  /** The signal number of a T/S reply (5 = SIGTRAP for a breakpoint), or the exit status of W / signal of X. */
  signal: number;
  kind: 'signal' | 'exited' | 'terminated';
  /**
   * The thread that stopped (`T05thread:02;`, or `thread:p1.2;` with the
   * multiprocess extension): in QEMU's gdbstub a thread is a vCPU, its id
   * the vCPU index + 1.
   */
  thread?: number;
  raw: string;
}

export function isStopReply(p: string): boolean {
  return /^[STWX][0-9a-fA-F]{2}/.test(p);
}

export function parseStop(p: string): StopReply {
  if (!isStopReply(p)) throw new GdbProtocolError('not a stop reply', p);
  const kind = p[0] === 'W' ? 'exited' : p[0] === 'X' ? 'terminated' : 'signal';
  const t = p[0] === 'T' ? /(?:^T[0-9a-fA-F]{2}|;)thread:(?:p[0-9a-fA-F]+\.)?([0-9a-fA-F]+);/.exec(p) : null;
  return { signal: parseInt(p.slice(1, 3), 16), kind, ...(t ? { thread: parseInt(t[1]!, 16) } : {}), raw: p };
}

/** Thread ids of a `qfThreadInfo`/`qsThreadInfo` reply ("m1,2" or "mp01.01,p01.02"); [] for the last ("l"). */
export function parseThreadList(reply: string): number[] {
  if (reply === 'l' || reply.startsWith('l')) return [];
  if (!reply.startsWith('m')) throw new GdbProtocolError('not a thread list', reply);
  return reply
    .slice(1)
    .split(',')
    .filter(Boolean)
    .map((id) => {
      const m = /^(?:p[0-9a-fA-F]+\.)?([0-9a-fA-F]+)$/.exec(id);
      if (!m) throw new GdbProtocolError('bad thread id in a thread list', reply);
      return parseInt(m[1]!, 16);
    });
}

/** A thread id as the protocol writes it (hex, no leading zeros). */
export function threadId(t: number): string {
  if (!Number.isInteger(t) || t <= 0) throw new RangeError(`gdbstub: ${t} is not a thread id (QEMU numbers vCPUs from 1)`);
  return t.toString(16);
}

/** Little-endian hex (as 'g' and 'm' replies carry registers and memory) to a number. */
export function leHex(h: string): bigint {
  const bytes = Buffer.from(h, 'hex');
  return bytes.length === 8 ? bytes.readBigUInt64LE(0) : 0n;
}
