import { createConnection, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import {
  QmpCommandError,
  QmpDisconnectedError,
  QmpProtocolError,
  QmpStateError,
  QmpTimeoutError,
} from './qmp-errors.ts';

/**
 * Connect to a unix socket QEMU is about to listen on: the socket file
 * appears at bind(), a moment before listen(), so ECONNREFUSED is retried.
 */
export async function connectUnix(path: string, timeoutMs: number): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = createConnection(path);
        s.once('connect', () => {
          s.removeAllListeners('error');
          resolve(s);
        });
        s.once('error', reject);
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 3));
    }
  }
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** One line of the transcript: what went over the socket, with host time. */
export interface QmpTranscriptEntry {
  t: number;
  dir: 'send' | 'recv';
  msg: unknown;
}

type RunState = 'idle' | 'connecting' | 'ready' | 'closed';

interface Pending {
  command: string;
  args: unknown;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/**
 * A QMP client: greeting, qmp_capabilities, id-matched replies, events.
 * Pending calls fail with QmpDisconnectedError when the socket drops, which is
 * what `quit` does by design, so `quit` treats a drop as success.
 */
export class QmpClient {
  private socket?: Socket;
  private state: RunState = 'idle';
  private nextId = 1;
  private pending = new Map<string, Pending>();
  private buffer = '';
  private readonly emitter = new EventEmitter();
  private readonly events: QmpEvent[] = [];
  readonly transcript: QmpTranscriptEntry[] = [];
  greeting?: unknown;

  async connect(path: string, timeoutMs = 10_000): Promise<void> {
    if (this.state !== 'idle') throw new QmpStateError(`connect() in state ${this.state}`);
    this.state = 'connecting';
    const socket = await connectUnix(path, timeoutMs);
    this.socket = socket;
    socket.setEncoding('utf8');
    const greeting = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new QmpTimeoutError('greeting', timeoutMs)), timeoutMs);
      this.emitter.once('greeting', () => {
        clearTimeout(timer);
        resolve();
      });
      this.emitter.once('closed', () => {
        clearTimeout(timer);
        reject(new QmpDisconnectedError('greeting'));
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => this.onClose());
    socket.on('error', () => {
      /* 'close' follows and fails the pending calls */
    });
    await greeting;
    this.state = 'ready';
    await this.execute('qmp_capabilities');
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.transcript.push({ t: Date.now(), dir: 'recv', msg: line });
      this.emitter.emit('protocol-error', new QmpProtocolError('not JSON', line));
      return;
    }
    this.transcript.push({ t: Date.now(), dir: 'recv', msg });
    if ('QMP' in msg) {
      this.greeting = msg;
      this.emitter.emit('greeting');
    } else if ('event' in msg) {
      const ev = msg as unknown as QmpEvent;
      this.events.push(ev);
      this.emitter.emit('event', ev);
    } else if ('return' in msg || 'error' in msg) {
      const id = String(msg.id ?? '');
      const p = this.pending.get(id);
      if (!p) return; // a reply to a call we gave up on
      this.pending.delete(id);
      if ('error' in msg) p.reject(new QmpCommandError(p.command, p.args, msg.error as { class: string; desc: string }));
      else p.resolve(msg.return);
    }
  }

  private onClose(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    for (const p of this.pending.values()) p.reject(new QmpDisconnectedError(p.command));
    this.pending.clear();
    this.emitter.emit('closed');
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  async execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.state !== 'ready' && !(this.state === 'connecting' && command === 'qmp_capabilities')) {
      throw new QmpStateError(`cannot execute ${command}: connection is ${this.state}`);
    }
    const id = `q${this.nextId++}`;
    const msg = { execute: command, ...(args ? { arguments: args } : {}), id };
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(`reply to ${command}`, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, {
        command,
        args,
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.transcript.push({ t: Date.now(), dir: 'send', msg });
      this.socket!.write(JSON.stringify(msg) + '\n');
    });
  }

  /** Wait for an event, including one that already arrived after `since` (an index into the event log). */
  waitEvent(name: string, timeoutMs: number, since = 0): Promise<QmpEvent> {
    const seen = this.events.slice(since).find((e) => e.event === name);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new QmpTimeoutError(`${name} event`, timeoutMs));
      }, timeoutMs);
      const onEvent = (e: QmpEvent) => {
        if (e.event !== name) return;
        cleanup();
        resolve(e);
      };
      const onClosed = () => {
        // QEMU sends SHUTDOWN before closing: look once more, then fail.
        const late = this.events.slice(since).find((e) => e.event === name);
        cleanup();
        if (late) resolve(late);
        else reject(new QmpDisconnectedError(`${name} event`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.emitter.off('event', onEvent);
        this.emitter.off('closed', onClosed);
      };
      this.emitter.on('event', onEvent);
      this.emitter.once('closed', onClosed);
    });
  }

  get eventLog(): readonly QmpEvent[] {
    return this.events;
  }

  onEvent(fn: (e: QmpEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }

  /** `quit` closes the socket before or instead of replying; both are success. */
  async quit(timeoutMs = 10_000): Promise<void> {
    if (this.state !== 'ready') return;
    const closed = new Promise<void>((r) => this.emitter.once('closed', r));
    try {
      await this.execute('quit', undefined, timeoutMs);
    } catch (e) {
      if (!(e instanceof QmpDisconnectedError)) throw e;
    }
    await Promise.race([closed, new Promise((r) => setTimeout(r, timeoutMs))]);
  }

  close(): void {
    this.socket?.destroy();
    this.onClose();
  }

  transcriptJsonl(): string {
    return this.transcript.map((e) => JSON.stringify(e)).join('\n') + '\n';
  }
}
