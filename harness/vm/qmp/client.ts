import { SocketChannel } from '../channel.ts';
import { LineSplitter } from '../unix-socket.ts';
import { withTimeout } from '../../util/timeout.ts';
import { commandMessage, encodeMessage, parseQmpLine, type QmpEvent, type QmpGreeting, type QmpMessage } from './protocol.ts';
import { QmpCommandError, QmpDisconnectedError, QmpProtocolError, QmpStateError, QmpTimeoutError } from './errors.ts';
import { QmpEventLog } from './events.ts';

export type { QmpEvent } from './protocol.ts';

/**
 * A QMP client in the shape of python's qemu.qmp: greeting, capabilities
 * negotiation, replies matched by id (so they may arrive in any order),
 * events kept in a log with waiters and a stream, and every message recorded
 * in the channel's transcript. When the socket drops, every pending call
 * fails with QmpDisconnectedError; that is what `quit` does by design, so
 * `quit` counts a drop as success.
 */
export class QmpClient extends SocketChannel {
  protected readonly protocol = 'QMP';
  private nextId = 1;
  private readonly lines = new LineSplitter();
  private greetingWaiter?: { resolve: () => void; reject: (e: Error) => void };
  readonly events = new QmpEventLog();
  greeting?: QmpGreeting;

  protected disconnected(what: string | undefined, cause: Error | undefined): Error {
    return new QmpDisconnectedError(what, cause);
  }

  protected stateError(message: string): Error {
    return new QmpStateError(message);
  }

  /** Connect, read the greeting, negotiate capabilities. The deadline covers all three. */
  async connect(path: string, timeoutMs = 10_000, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const greeted = new Promise<void>((resolve, reject) => (this.greetingWaiter = { resolve, reject }));
    greeted.catch(() => {});
    await this.open(path, timeoutMs, signal, 'utf8');
    await withTimeout(greeted, deadline - Date.now(), () => {
      const e = new QmpTimeoutError('greeting', timeoutMs);
      this.fail(e);
      return e;
    });
    await this.send('qmp_capabilities', undefined, Math.max(1, deadline - Date.now()));
    this.markRunning();
  }

  protected onData(chunk: string): void {
    for (const line of this.lines.push(chunk)) if (line.trim()) this.onLine(line);
  }

  private onLine(line: string): void {
    let msg: QmpMessage;
    try {
      msg = parseQmpLine(line);
    } catch (e) {
      this.transcript.received(line);
      this.fail(e as QmpProtocolError);
      return;
    }
    this.transcript.received(line, JSON.parse(line));
    if (this.state === 'connecting' && !this.greeting && msg.kind !== 'greeting') {
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
        if (!this.pending.has(msg.id)) return; // a late reply to a call that timed out: kept in the transcript only
        if (msg.kind === 'error') {
          const { command, args } = this.sentCommands.get(msg.id) ?? { command: '?', args: undefined };
          this.rejectPending(msg.id, new QmpCommandError(command, args, msg.error));
        } else this.settle(msg.id, msg.value);
        this.sentCommands.delete(msg.id);
        return;
      }
    }
  }

  private readonly sentCommands = new Map<string, { command: string; args: Record<string, unknown> | undefined }>();

  protected override onClosed(cause: Error | undefined): void {
    this.greetingWaiter?.reject(new QmpDisconnectedError('the greeting', cause));
    this.events.close(new QmpDisconnectedError(undefined, cause));
  }

  /** Run a command; resolves with its "return" value, rejects with a QmpError child. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    try {
      if (this.state === 'connecting') throw new QmpStateError(`cannot execute ${command}: the QMP connection is connecting`);
      this.ensureRunning(`the reply to ${command}`);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.send<T>(command, args, timeoutMs);
  }

  private send<T>(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<T> {
    const id = `qcrash-${this.nextId++}`;
    const msg = commandMessage(id, command, args);
    this.sentCommands.set(id, { command, args });
    return this.track<T>(
      id,
      `the reply to ${command}`,
      () => this.write(encodeMessage(msg), { msg }),
      timeoutMs,
      () => {
        this.sentCommands.delete(id);
        return new QmpTimeoutError(`reply to ${command}`, timeoutMs);
      },
    );
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

  /**
   * Ask QEMU to exit. QEMU replies, sends SHUTDOWN and closes the socket,
   * but may close before the reply is read: a drop counts as success.
   * Returns whether the socket closed within timeoutMs.
   */
  async quit(timeoutMs = 10_000): Promise<boolean> {
    if (this.state !== 'running') return this.state === 'closed';
    try {
      await this.execute('quit', undefined, timeoutMs);
    } catch (e) {
      if (!(e instanceof QmpDisconnectedError)) throw e;
    }
    return this.waitClosed(timeoutMs);
  }

  transcriptJsonl(): string {
    return this.transcript.toJsonl();
  }
}
