import { InfraError } from '../util/errors.ts';

/** Root of QMP failures; each child keeps what was sent and what came back. */
export class QmpError extends InfraError {}

/** QEMU answered a command with {"error": ...}. */
export class QmpCommandError extends QmpError {
  constructor(
    readonly command: string,
    readonly args: unknown,
    readonly reply: { class: string; desc: string },
  ) {
    super(`QMP ${command} failed: ${reply.class}: ${reply.desc}`);
  }
}

/** The socket closed while calls were pending (QEMU exited or crashed). */
export class QmpDisconnectedError extends QmpError {
  constructor(readonly pendingCommand?: string) {
    super(pendingCommand ? `QMP connection closed while waiting for the reply to ${pendingCommand}` : 'QMP connection closed');
  }
}

export class QmpTimeoutError extends QmpError {
  constructor(readonly what: string, readonly timeoutMs: number) {
    super(`QMP: no ${what} within ${timeoutMs} ms`);
  }
}

/** A line that is not JSON, or a greeting/reply of the wrong shape. */
export class QmpProtocolError extends QmpError {
  constructor(message: string, readonly received: string) {
    super(`QMP protocol error: ${message}: ${received.slice(0, 200)}`);
  }
}

/** A call made in a state that does not allow it (before connect, after close). */
export class QmpStateError extends QmpError {}
