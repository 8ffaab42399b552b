import type { Socket } from 'node:net';
import { connectUnix, LineSplitter } from './unix-socket.ts';
import { commandMessage, encodeMessage, parseQmpLine, type QmpEvent, type QmpGreeting, type QmpMessage } from './qmp-protocol.ts';
import { QmpCommandError, QmpDisconnectedError, QmpProtocolError, QmpStateError, QmpTimeoutError } from './qmp-errors.ts';
import { QmpEventLog } from './qmp-events.ts';
import { QmpTranscript } from './qmp-transcript.ts';

export { connectUnix } from './unix-socket.ts';
export type { QmpEvent } from './qmp-protocol.ts';
export type { QmpTranscriptEntry } from './qmp-transcript.ts';

/**
 * The connection's life: commands are only sent while `running`; the
 * greeting and qmp_capabilities happen in `connecting`; after `closed`
 * nothing is sent again (a new connection needs a new client).
 */
export type QmpRunState = 'idle' | 'connecting' | 'running' | 'disconnecting' | 'closed';

interface Pending {
  command: string;
  args: Record<string, unknown> | undefined;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/**
 * A QMP client in the shape of python's qemu.qmp: greeting, capabilities
 * negotiation, replies matched by id (so they may arrive in any order),
 * events kept in a log with waiters and a stream, and every message recorded
 * in a transcript. When the socket drops, every pending call fails with
 * QmpDisconnectedError; that is what `quit` does by design, so `quit`
 * counts a drop as success.
 */
export class QmpClient {
  private socket?: Socket;
  private runState: QmpRunState = 'idle';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly lines = new LineSplitter();
  private greetingWaiter?: { resolve: () => void; reject: (e: Error) => void };
  private closeWaiters: Array<() => void> = [];
  readonly events = new QmpEventLog();
  readonly transcript = new QmpTranscript();
  greeting?: QmpGreeting;
  /** Why the connection ended: undefined while open or after a plain close. */
  disconnectCause?: Error;

  get state(): QmpRunState {
    return this.runState;
  }

  get closed(): boolean {
    return this.runState === 'closed';
  }

  /** Connect, read the greeting, negotiate capabilities. The deadline covers all three. */
  async connect(path: string, timeoutMs = 10_000, signal?: AbortSignal): Promise<void> {
    if (this.runState !== 'idle') throw new QmpStateError(`connect() on a QMP client in state ${this.runState}`);
    this.runState = 'connecting';
    const deadline = Date.now() + timeoutMs;
    let socket: Socket;
    try {
      socket = await connectUnix(path, timeoutMs, signal);
    } catch (e) {
      this.runState = 'closed';
      throw e;
    }
    this.socket = socket;
    socket.setEncoding('utf8');
    const greeted = new Promise<void>((resolve, reject) => (this.greetingWaiter = { resolve, reject }));
    socket.on('data', (chunk: string) => {
      for (const line of this.lines.push(chunk)) if (line.trim()) this.onLine(line);
    });
    socket.on('error', (e) => {
      this.disconnectCause ??= e;
    });
    socket.on('close', () => this.onClose());
    await withTimeout(greeted, deadline - Date.now(), () => {
      const e = new QmpTimeoutError('greeting', timeoutMs);
      this.fail(e);
      return e;
    });
    await this.send('qmp_capabilities', undefined, Math.max(1, deadline - Date.now()));
    this.runState = 'running';
  }

  private onLine(line: string): void {
    let msg: QmpMessage;
    try {
      msg = parseQmpLine(line);
    } catch (e) {
      this.transcript.received(line, undefined);
      this.fail(e as QmpProtocolError);
      return;
    }
    this.transcript.received(line, JSON.parse(line));
    if (this.runState === 'connecting' && !this.greeting && msg.kind !== 'greeting') {
      this.fail(new QmpProtocolError('expected the greeting first', line));
      return;
    }
    switch (msg.kind) {
      case 'greeting':
        if (this.greeting) return this.fail(new QmpProtocolError('a second greeting', line));
        this.greeting = msg.greeting;
        this.greetingWaiter?.resolve();
        return;
      case 'event':
        this.events.push(msg.event);
        return;
      case 'return':
      case 'error': {
        // QEMU answers without an id only when it could not parse what we
        // sent; then no pending call can be told apart from another.
        if (msg.id === undefined) return this.fail(new QmpProtocolError('a reply without an id', line));
        const p = this.pending.get(msg.id);
        if (!p) return; // a late reply to a call that timed out: kept in the transcript only
        this.pending.delete(msg.id);
        if (msg.kind === 'error') p.reject(new QmpCommandError(p.command, p.args, msg.error));
        else p.resolve(msg.value);
        return;
      }
    }
  }

  /** A protocol violation or a timeout during connect: nothing on this connection can be trusted. */
  private fail(cause: Error): void {
    this.disconnectCause ??= cause;
    this.greetingWaiter?.reject(new QmpDisconnectedError('the greeting', cause));
    this.socket?.destroy();
    this.onClose();
  }

  private onClose(): void {
    if (this.runState === 'closed') return;
    this.runState = 'closed';
    const cause = this.disconnectCause;
    this.greetingWaiter?.reject(new QmpDisconnectedError('the greeting', cause));
    for (const p of this.pending.values()) p.reject(new QmpDisconnectedError(`the reply to ${p.command}`, cause));
    this.pending.clear();
    this.events.close(new QmpDisconnectedError(undefined, cause));
    for (const w of this.closeWaiters) w();
    this.closeWaiters = [];
  }

  /** Run a command; resolves with its "return" value, rejects with a QmpError child. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.runState === 'closed' || this.runState === 'disconnecting') {
      return Promise.reject(new QmpDisconnectedError(`the reply to ${command} (not sent: the connection is ${this.runState})`, this.disconnectCause));
    }
    if (this.runState !== 'running') return Promise.reject(new QmpStateError(`cannot execute ${command}: the QMP connection is ${this.runState}`));
    return this.send<T>(command, args, timeoutMs);
  }

  private send<T>(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<T> {
    const id = `qcrash-${this.nextId++}`;
    const msg = commandMessage(id, command, args);
    const reply = new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, args, resolve: resolve as (v: unknown) => void, reject });
    });
    this.transcript.sent(msg);
    this.socket!.write(encodeMessage(msg));
    return withTimeout(reply, timeoutMs, () => {
      this.pending.delete(id);
      return new QmpTimeoutError(`reply to ${command}`, timeoutMs);
    });
  }

  /** Wait for an event at or after log position `since` (default 0: one already received counts). */
  waitEvent(name: string, timeoutMs: number, since = 0): Promise<QmpEvent> {
    return this.events.wait(name, timeoutMs, since);
  }

  /** Events from now on, until the connection closes. */
  eventStream(): AsyncIterableIterator<QmpEvent> {
    return this.events.stream();
  }

  get eventLog(): readonly QmpEvent[] {
    return this.events.all;
  }

  onEvent(fn: (e: QmpEvent) => void): () => void {
    return this.events.on(fn);
  }

  /** Resolves once the socket is closed (immediately if it is), or after timeoutMs. */
  waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.runState === 'closed') return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /**
   * Ask QEMU to exit. QEMU replies, sends SHUTDOWN and closes the socket,
   * but may close before the reply is read: a drop counts as success.
   * Returns whether the socket closed within timeoutMs.
   */
  async quit(timeoutMs = 10_000): Promise<boolean> {
    if (this.runState !== 'running') return this.runState === 'closed';
    try {
      await this.execute('quit', undefined, timeoutMs);
    } catch (e) {
      if (!(e instanceof QmpDisconnectedError)) throw e;
    }
    return this.waitClosed(timeoutMs);
  }

  /** Close our end. Pending calls fail with QmpDisconnectedError. Idempotent. */
  close(): void {
    if (this.runState === 'closed') return;
    this.runState = 'disconnecting';
    this.socket?.destroy();
    this.onClose();
  }

  transcriptJsonl(): string {
    return this.transcript.toJsonl();
  }
}

/** Race a promise against a timer whose error comes from onTimeout (which may also clean up). */
function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
