import { GdbProtocolError } from './gdb-errors.ts';

/*
 * GDB remote serial protocol framing. Everything is handled as latin1
 * strings: one char per byte, so binary payloads survive unchanged.
 *
 *   $payload#cs   cs = two hex digits, sum of the payload bytes mod 256
 *   +  -          ack / nak (until QStartNoAckMode)
 *   \x03          interrupt, client to stub only
 *   %payload#cs   asynchronous notification (non-stop mode; QEMU sends none)
 */

export function checksum(payload: string): string {
  let s = 0;
  for (let i = 0; i < payload.length; i++) s = (s + payload.charCodeAt(i)) & 0xff;
  return s.toString(16).padStart(2, '0');
}

/** `$payload#cs`. The payload must already be escaped where it carries binary data. */
export function frame(payload: string, start: '$' | '%' = '$'): string {
  return `${start}${payload}#${checksum(payload)}`;
}

/** Escape binary data for a packet: `#`, `$`, `}` and `*` become `}` followed by the byte XOR 0x20. */
export function escapeBinary(data: string): string {
  return data.replace(/[#$}*]/g, (c) => `}${String.fromCharCode(c.charCodeAt(0) ^ 0x20)}`);
}

/** Undo escapeBinary. Only binary replies (qXfer, vFile) are escaped; hex replies never contain `}`. */
export function unescapeBinary(data: string): string {
  let out = '';
  for (let i = 0; i < data.length; i++) {
    const c = data[i]!;
    if (c !== '}') {
      out += c;
      continue;
    }
    if (i + 1 >= data.length) throw new GdbProtocolError('binary reply ends inside an escape sequence', undefined, data);
    out += String.fromCharCode(data.charCodeAt(++i) ^ 0x20);
  }
  return out;
}

/**
 * Expand run-length encoding: `X*N` means X followed by (code(N) - 29) more
 * copies of X. gdb expands before unescaping, and so do we.
 */
export function expandRunLength(payload: string): string {
  if (!payload.includes('*')) return payload;
  let out = '';
  for (let i = 0; i < payload.length; i++) {
    const c = payload[i]!;
    if (c !== '*') {
      out += c;
      continue;
    }
    if (out.length === 0 || i + 1 >= payload.length) throw new GdbProtocolError('malformed run-length encoding', undefined, payload);
    const n = payload.charCodeAt(++i) - 29;
    if (n < 3 || n > 97) throw new GdbProtocolError(`run-length count ${JSON.stringify(payload[i])} out of range`, undefined, payload);
    out += out.at(-1)!.repeat(n);
  }
  return out;
}

/**
 * Run-length encode as a stub may (used by test stubs): runs of 4 or more,
 * never producing a count character that is `#` or `$` (6 and 7 repeats).
 */
export function encodeRunLength(data: string): string {
  let out = '';
  for (let i = 0; i < data.length; ) {
    const c = data[i]!;
    let run = 1;
    while (i + run < data.length && data[i + run] === c && run < 98) run++;
    let extra = run - 1;
    if (extra === 6 || extra === 7) extra = 5;
    if (extra >= 3 && c !== '*' && c !== '#' && c !== '$') {
      out += c + '*' + String.fromCharCode(extra + 29);
      i += extra + 1;
    } else {
      out += c;
      i += 1;
    }
  }
  return out;
}

export type WireEvent =
  | { type: 'ack' }
  | { type: 'nak' }
  | { type: 'interrupt' }
  /** `payload` is the raw wire payload: still run-length encoded and escaped. */
  | { type: 'packet'; payload: string; checksumOk: boolean; notification: boolean; raw: string };

/**
 * Incremental parser for one direction of the stream: bytes in, events out.
 * Frames may arrive split across any number of chunks. Bytes outside a frame
 * other than + - \x03 are line noise and are dropped.
 */
export class PacketReader {
  private buf = '';

  push(chunk: string): WireEvent[] {
    this.buf += chunk;
    const events: WireEvent[] = [];
    for (;;) {
      let i = 0;
      while (i < this.buf.length) {
        const c = this.buf[i]!;
        if (c === '$' || c === '%') break;
        if (c === '+') events.push({ type: 'ack' });
        else if (c === '-') events.push({ type: 'nak' });
        else if (c === '\x03') events.push({ type: 'interrupt' });
        i++;
      }
      this.buf = this.buf.slice(i);
      if (!this.buf) return events;
      const hash = this.buf.indexOf('#', 1);
      if (hash < 0 || this.buf.length < hash + 3) return events;
      const payload = this.buf.slice(1, hash);
      const cs = this.buf.slice(hash + 1, hash + 3);
      const raw = this.buf.slice(0, hash + 3);
      this.buf = this.buf.slice(hash + 3);
      events.push({ type: 'packet', payload, checksumOk: checksum(payload) === cs.toLowerCase(), notification: raw[0] === '%', raw });
    }
  }

  /** Bytes of an unfinished frame, for error reports when the stream breaks. */
  get pending(): string {
    return this.buf;
  }
}

/** Lower-case hex of a byte string (latin1) or buffer, as `m`/`M` packets carry memory. */
export function toHex(data: Buffer): string {
  return data.toString('hex');
}

export function fromHex(hex: string, what: string): Buffer {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new GdbProtocolError(`${what}: not a hex string`, undefined, hex);
  return Buffer.from(hex, 'hex');
}
