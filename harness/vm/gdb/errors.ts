import { ChannelError } from '../channel.ts';

/** GDB remote protocol failures keep the packet sent and what came back. */
export class GdbError extends ChannelError {
  constructor(
    message: string,
    readonly sent?: string,
    readonly received?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
export class GdbTimeoutError extends GdbError {}
export class GdbDisconnectedError extends GdbError {}
/** The stub sent something that is not a valid packet where one was due. */
export class GdbProtocolError extends GdbError {
  constructor(message: string, received: string) {
    super(`gdbstub protocol error: ${message}: ${received.slice(0, 200)}`, undefined, received);
  }
}
/**
 * A request made while the target runs (QEMU's gdbstub drops packets sent
 * while the guest runs: only an interrupt is heard), or before connect.
 */
export class GdbStateError extends GdbError {}
