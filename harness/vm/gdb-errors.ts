import { InfraError } from '../util/errors.ts';

/**
 * Root of every gdbstub failure. Keeps the packet that was sent and what came
 * back (or the partial frame buffered when the stream broke), so a case's
 * report can show the exchange that went wrong.
 */
export class GdbError extends InfraError {
  constructor(
    message: string,
    readonly sent?: string,
    readonly received?: string,
  ) {
    super(`${message}${sent !== undefined ? ` [sent "${clip(sent)}"]` : ''}${received !== undefined ? ` [received "${clip(received)}"]` : ''}`);
  }
}

/** The stub answered, but not as the protocol allows: an `Exx` reply, a malformed reply, a frame that kept failing its checksum. */
export class GdbProtocolError extends GdbError {
  /** The errno of an `Exx` reply, when that is what came back. */
  readonly errno?: number;
  constructor(message: string, sent?: string, received?: string) {
    super(message, sent, received);
    const m = received !== undefined ? /^E([0-9a-fA-F]{2})$/.exec(received) : null;
    if (m) this.errno = parseInt(m[1]!, 16);
  }
}

/** The empty reply: the stub does not implement the packet (QEMU answers `p` with it until the target XML was read). */
export class GdbUnsupportedError extends GdbProtocolError {}

export class GdbTimeoutError extends GdbError {}

/** The socket closed (QEMU exited or was killed) while something was outstanding, or a call came after the close. */
export class GdbDisconnectedError extends GdbError {}

/**
 * A call that the target's run state forbids. QEMU's gdbstub treats ANY byte
 * that arrives while the guest runs as an interrupt and drops it, so a packet
 * sent to a running target is silently lost and the guest is paused instead.
 */
export class GdbStateError extends GdbError {}

function clip(s: string): string {
  const printable = s.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return printable.length > 160 ? `${printable.slice(0, 160)}...(${s.length} chars)` : printable;
}
