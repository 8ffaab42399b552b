import { QmpProtocolError, type QmpErrorBody } from './errors.ts';

/**
 * QMP wire format (docs/interop/qmp-spec.txt): one JSON object per line.
 * The server sends a greeting, replies ({"return"} or {"error"}, carrying the
 * id the client chose) and asynchronous events. This module only classifies
 * lines; the connection and its state live in qmp-client.ts.
 */
export interface QmpGreeting {
  QMP: { version: { qemu: { major: number; minor: number; micro: number }; package?: string }; capabilities: string[] };
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export type QmpMessage =
  | { kind: 'greeting'; greeting: QmpGreeting }
  | { kind: 'return'; id: string | undefined; value: unknown }
  | { kind: 'error'; id: string | undefined; error: QmpErrorBody }
  | { kind: 'event'; event: QmpEvent };

/** Parse one line from the server. Anything that is not a QMP message is a QmpProtocolError. */
export function parseQmpLine(line: string): QmpMessage {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    throw new QmpProtocolError('not JSON', line);
  }
  if (!msg || typeof msg !== 'object' || Array.isArray(msg)) throw new QmpProtocolError('not a JSON object', line);
  const o = msg as Record<string, unknown>;
  const id = o.id === undefined ? undefined : typeof o.id === 'string' ? o.id : JSON.stringify(o.id);
  if ('QMP' in o && o.QMP && typeof o.QMP === 'object') return { kind: 'greeting', greeting: o as unknown as QmpGreeting };
  if ('return' in o) return { kind: 'return', id, value: o.return };
  if ('error' in o) {
    const e = o.error as Partial<QmpErrorBody> | null;
    if (!e || typeof e !== 'object') throw new QmpProtocolError('error reply without an error object', line);
    return { kind: 'error', id, error: { class: String(e.class ?? 'GenericError'), desc: String(e.desc ?? '') } };
  }
  if (typeof o.event === 'string') return { kind: 'event', event: o as unknown as QmpEvent };
  throw new QmpProtocolError('neither greeting, reply nor event', line);
}

export interface QmpCommandMessage {
  execute: string;
  arguments?: Record<string, unknown>;
  id: string;
}

export function commandMessage(id: string, command: string, args?: Record<string, unknown>): QmpCommandMessage {
  return { execute: command, ...(args ? { arguments: args } : {}), id };
}

export function encodeMessage(msg: QmpCommandMessage): string {
  return JSON.stringify(msg) + '\n';
}
