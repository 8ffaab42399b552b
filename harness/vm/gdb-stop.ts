import { GdbProtocolError } from './gdb-errors.ts';

/**
 * A thread id as the stub writes it: `01`, or `p01.01` once multiprocess
 * extensions were negotiated. QEMU has one "thread" per vCPU (tid = vCPU
 * index + 1) in one process (pid 1 unless there are several CPU clusters).
 * tid -1 means all threads, 0 any thread.
 */
export interface ThreadId {
  pid?: number;
  tid: number;
}

export function parseThreadId(s: string): ThreadId {
  const num = (x: string): number => {
    if (x === '-1') return -1;
    if (!/^[0-9a-fA-F]+$/.test(x)) throw new GdbProtocolError(`bad thread id "${s}"`, undefined, s);
    return parseInt(x, 16);
  };
  if (s.startsWith('p')) {
    const [pid, tid] = s.slice(1).split('.');
    return { pid: num(pid ?? ''), tid: tid === undefined ? -1 : num(tid) };
  }
  return { tid: num(s) };
}

export function formatThreadId(t: ThreadId, multiprocess: boolean): string {
  const hex = (n: number) => (n < 0 ? '-1' : n.toString(16).padStart(2, '0'));
  return multiprocess ? `p${hex(t.pid ?? 1)}.${hex(t.tid)}` : hex(t.tid);
}

export function sameThread(a: ThreadId | undefined, b: ThreadId | undefined): boolean {
  return !!a && !!b && a.tid === b.tid && (a.pid ?? 1) === (b.pid ?? 1);
}

/** Signals QEMU's system-mode stub reports. */
export const GdbSignal = { INT: 2, TRAP: 5 } as const;

/**
 * A stop reply. QEMU sends `T05thread:p01.01;` for a breakpoint or a finished
 * step, `T02thread:01;` when the VM was paused (a debugger attached, an
 * interrupt byte arrived, or QMP `stop`), `W00` when the VM shuts down.
 */
export interface StopReply {
  kind: 'stopped' | 'exited' | 'terminated';
  /** The stop signal (stopped), exit status (exited) or terminating signal (terminated). */
  signal: number;
  thread?: ThreadId;
  /** `NN:value` pairs: register number to hex value in target byte order. QEMU sends none. */
  registers: Map<number, string>;
  /** swbreak, hwbreak, watch, rwatch, awatch, library, ... with their values. */
  reasons: Map<string, string>;
  raw: string;
}

const stopLike = /^(?:[ST][0-9a-fA-F]{2}|[WX][0-9a-fA-F]{2}(?:;|$))/;

/** True for payloads only a stop reply can have: no other reply starts with S, T, W or X plus two hex digits. */
export function isStopReply(payload: string): boolean {
  return stopLike.test(payload);
}

export function parseStopReply(payload: string, sent?: string): StopReply {
  if (!isStopReply(payload)) throw new GdbProtocolError('not a stop reply', sent, payload);
  const code = parseInt(payload.slice(1, 3), 16);
  const registers = new Map<number, string>();
  const reasons = new Map<string, string>();
  let thread: ThreadId | undefined;
  const kind = payload[0] === 'W' ? 'exited' : payload[0] === 'X' ? 'terminated' : 'stopped';
  if (payload[0] === 'T') {
    for (const part of payload.slice(3).split(';')) {
      if (!part) continue;
      const colon = part.indexOf(':');
      const key = colon < 0 ? part : part.slice(0, colon);
      const value = colon < 0 ? '' : part.slice(colon + 1);
      if (key === 'thread') thread = parseThreadId(value);
      else if (/^[0-9a-fA-F]+$/.test(key) && colon >= 0) registers.set(parseInt(key, 16), value);
      else reasons.set(key, value);
    }
  } else if (kind !== 'stopped') {
    // W/X may carry ";process:pid".
    const m = /;process:([0-9a-fA-F]+)/.exec(payload);
    if (m) thread = { pid: parseInt(m[1]!, 16), tid: -1 };
  }
  return { kind, signal: code, ...(thread ? { thread } : {}), registers, reasons, raw: payload };
}
