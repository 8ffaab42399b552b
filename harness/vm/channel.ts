import type { Socket } from 'node:net';
import { InfraError } from '../util/errors.ts';
import { withTimeout } from '../util/timeout.ts';
import { connectUnix } from './unix-socket.ts';
import { Transcript } from './transcript.ts';

/**
 * The life of a channel: messages are only sent while `running`; the
 * handshake (QMP's greeting, gdb's qSupported) happens in `connecting`;
 * after `closed` nothing is sent again (a new connection needs a new client).
 */
export type ChannelState = 'idle' | 'connecting' | 'running' | 'disconnecting' | 'closed';

/** Root of the channel failures; each protocol has its own children that keep what was sent and received. */
export class ChannelError extends InfraError {}

/** A request that is waiting for its answer. `fail` is called when the channel drops. */
export interface PendingRequest {
  readonly what: string;
  fail(e: Error): void;
}

/**
 * The part every host-to-VM protocol client shares (QMP, the guest agent,
 * the gdbstub), in the shape of python's qemu.qmp: a unix socket QEMU
 * serves, a run-state guard, a table of pending requests that all fail with
 * one disconnect error (carrying the cause) when the socket drops or the
 * peer breaks the protocol, per-request timeouts, and a transcript of every
 * message. Subclasses parse their wire format in `onData` and decide which
 * pending request a message answers.
 */
export abstract class SocketChannel {
  protected socket?: Socket;
  private runState: ChannelState = 'idle';
  protected readonly pending = new Map<string | number, PendingRequest>();
  private closeListeners: Array<(cause: Error | undefined) => void> = [];
  readonly transcript = new Transcript();
  /** Why the connection ended: undefined while open or after a plain close(). */
  disconnectCause?: Error;

  /** "QMP", "agent", "gdbstub": for messages. */
  protected abstract readonly protocol: string;
  protected abstract onData(chunk: string): void;
  /** The error pending requests fail with when the channel drops: `what` is what the request was waiting for. */
  protected abstract disconnected(what: string | undefined, cause: Error | undefined): Error;
  /** A call made in a state that does not allow it. */
  protected abstract stateError(message: string): Error;

  get state(): ChannelState {
    return this.runState;
  }

  get closed(): boolean {
    return this.runState === 'closed';
  }

  /** Open the socket (retrying until QEMU listens, see connectUnix); the subclass does its handshake, then calls markRunning(). */
  protected async open(
    path: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    encoding: BufferEncoding,
  ): Promise<void> {
    if (this.runState !== 'idle') throw this.stateError(`connect() on a ${this.protocol} client in state ${this.runState}`);
    this.runState = 'connecting';
    let socket: Socket;
    try {
      socket = await connectUnix(path, timeoutMs, signal);
    } catch (e) {
      this.runState = 'closed';
      throw e;
    }
    this.socket = socket;
    socket.setEncoding(encoding);
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (e) => {
      this.disconnectCause ??= e;
    });
    socket.on('close', () => this.handleClose());
  }

  protected markRunning(): void {
    if (this.runState === 'connecting') this.runState = 'running';
  }

  /** Throws unless messages may be sent: the connection is gone (disconnect error) or not up yet (state error). */
  protected ensureRunning(what: string): void {
    if (this.runState === 'closed' || this.runState === 'disconnecting') {
      throw this.disconnected(`${what} (not sent: the connection is ${this.runState})`, this.disconnectCause);
    }
    if (this.runState !== 'running' && this.runState !== 'connecting') {
      throw this.stateError(`cannot send ${what}: the ${this.protocol} connection is ${this.runState}`);
    }
  }

  /** Write raw bytes and record them: as the decoded message, or as the text a person reads (a gdb payload without its framing). */
  protected write(raw: string, shown: { msg?: unknown; text?: string } = {}): void {
    this.transcript.sent(shown.text ?? raw.replace(/\n$/, ''), shown.msg);
    this.socket?.write(raw);
  }

  /**
   * Register a request under `key`, run `send`, and wait for the answer
   * (delivered by the subclass through settle/rejectPending) for at most
   * `timeoutMs`; a timed-out request is forgotten, so a late answer is only
   * kept in the transcript.
   */
  protected track<T>(
    key: string | number,
    what: string,
    send: () => void,
    timeoutMs: number,
    onTimeout: () => Error,
  ): Promise<T> {
    const answer = new Promise<T>((resolve, reject) => {
      this.pending.set(key, { what, fail: reject, resolve } as PendingRequest & { resolve: (v: T) => void });
    });
    send();
    return withTimeout(answer, timeoutMs, () => {
      this.pending.delete(key);
      return onTimeout();
    });
  }

  /** Deliver an answer to the request registered under `key`; false when nothing waits for it. */
  protected settle(key: string | number, value: unknown): boolean {
    const p = this.pending.get(key) as (PendingRequest & { resolve?: (v: unknown) => void }) | undefined;
    if (!p?.resolve) return false;
    this.pending.delete(key);
    p.resolve(value);
    return true;
  }

  protected rejectPending(key: string | number, e: Error): boolean {
    const p = this.pending.get(key);
    if (!p) return false;
    this.pending.delete(key);
    p.fail(e);
    return true;
  }

  /** The peer broke the protocol (or a handshake timed out): nothing on this connection can be trusted. */
  protected fail(cause: Error): void {
    this.disconnectCause ??= cause;
    this.socket?.destroy();
    this.handleClose();
  }

  private handleClose(): void {
    if (this.runState === 'closed') return;
    this.runState = 'closed';
    const cause = this.disconnectCause;
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.fail(this.disconnected(p.what, cause));
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const l of listeners) l(cause);
    this.onClosed(cause);
  }

  /** Hook for subclasses: fail their own waiters (event waiters, stop waiters) when the channel is gone. */
  protected onClosed(_cause: Error | undefined): void {}

  /** Called once when the channel closes (at once if it already has). */
  onClose(fn: (cause: Error | undefined) => void): void {
    if (this.runState === 'closed') fn(this.disconnectCause);
    else this.closeListeners.push(fn);
  }

  /** Resolves once the socket is closed (immediately if it is), or false after timeoutMs. */
  waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.runState === 'closed') return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.closeListeners.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Close our end. Pending requests fail with the disconnect error, carrying `cause` when one is given. Idempotent. */
  close(cause?: Error): void {
    if (this.runState === 'closed') return;
    if (cause) this.disconnectCause ??= cause;
    this.runState = 'disconnecting';
    this.socket?.destroy();
    this.handleClose();
  }
}
