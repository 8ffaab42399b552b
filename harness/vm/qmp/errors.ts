import { ChannelError } from '../channel.ts';

/** What QEMU says in an error reply: {"error": {"class": ..., "desc": ...}}. */
export interface QmpErrorBody {
  class: string;
  desc: string;
}

/** Root of QMP failures; each child keeps what was sent and what came back. */
export class QmpError extends ChannelError {}

/** QEMU answered a command with {"error": ...}. */
export class QmpCommandError extends QmpError {
  constructor(
    readonly command: string,
    readonly args: Record<string, unknown> | undefined,
    readonly reply: QmpErrorBody,
  ) {
    super(`QMP ${command}${args ? ` ${JSON.stringify(args)}` : ''} failed: ${reply.class}: ${reply.desc}`);
  }
}

/**
 * The connection is gone: pending calls fail with this when the socket drops
 * (QEMU exited, was killed, or closed the monitor), and so do calls made after.
 */
export class QmpDisconnectedError extends QmpError {
  constructor(
    readonly pendingCommand?: string,
    cause?: Error,
  ) {
    super(
      pendingCommand ? `QMP connection closed while waiting for ${pendingCommand}` : 'QMP connection closed',
      cause ? { cause } : undefined,
    );
  }
}

/** No reply, greeting or event within the time allowed. */
export class QmpTimeoutError extends QmpError {
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`QMP: no ${what} within ${timeoutMs} ms`);
  }
}

/**
 * The server sent something that is not QMP (not JSON, a reply without an
 * id, a missing greeting). The connection cannot be trusted after that, so
 * the client disconnects and fails every pending call with a
 * QmpDisconnectedError whose cause is this error.
 */
export class QmpProtocolError extends QmpError {
  constructor(
    message: string,
    readonly received: string,
  ) {
    super(`QMP protocol error: ${message}: ${received.slice(0, 200)}`);
  }
}

/** A call made in a state that does not allow it (before connect, twice connect). */
export class QmpStateError extends QmpError {}
