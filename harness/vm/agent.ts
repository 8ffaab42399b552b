import type { Socket } from 'node:net';
import { connectUnix } from './unix-socket.ts';
import { EventEmitter } from 'node:events';
import { InfraError } from '../util/errors.ts';

/** The agent channel closed or misbehaved; keeps the command and what came back. */
export class AgentError extends InfraError {
  constructor(message: string, readonly command?: string, readonly received?: string) {
    super(message);
  }
}

export interface AgentReply {
  exitCode: number;
  output: string;
}

/**
 * A command in flight. `held` resolves when a held command waits for `go()`;
 * `started` resolves with the host time (performance.now()) at which the
 * agent's start marker arrived; `done` with the exit status and output.
 */
export interface AgentCommand {
  id: number;
  command: string;
  held: Promise<void>;
  started: Promise<number>;
  done: Promise<AgentReply>;
  go(): void;
}

interface Waiting {
  command: string;
  held: () => void;
  started: (t: number) => void;
  done: (r: AgentReply) => void;
  fail: (e: Error) => void;
}

/**
 * Host side of the guest agent (vm-images/guest/qcrash-agent). Arguments are
 * sent base64-encoded so the guest shell never interprets them.
 */
export class AgentClient {
  private socket?: Socket;
  private buffer = '';
  private nextId = 1;
  private waiting = new Map<number, Waiting>();
  private closedError?: Error;
  private readonly emitter = new EventEmitter();
  /** Every line sent and received, for the case's artefacts. */
  readonly transcript: string[] = [];

  async connect(path: string): Promise<void> {
    const socket = await connectUnix(path, 10_000);
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => this.onData(c));
    socket.on('close', () => this.onClose());
    socket.on('error', () => {
      /* close follows */
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onLine(line);
    }
  }

  private onLine(line: string): void {
    const t = performance.now();
    this.transcript.push(`${Date.now()} < ${line.length > 300 ? line.slice(0, 300) + '...' : line}`);
    const [idText, kind, code, b64] = line.split(' ');
    const w = this.waiting.get(Number(idText));
    if (!w) return;
    if (kind === 'held') w.held();
    else if (kind === 'start') w.started(t);
    else if (kind === 'done') {
      this.waiting.delete(Number(idText));
      w.done({ exitCode: Number(code), output: Buffer.from(b64 ?? '', 'base64').toString('utf8') });
    }
  }

  private onClose(): void {
    this.closedError = new AgentError('agent channel closed (the VM stopped or the guest died)');
    for (const w of this.waiting.values()) w.fail(new AgentError(`agent channel closed during "${w.command}"`, w.command));
    this.waiting.clear();
    this.emitter.emit('closed');
  }

  /** Send a command; with `hold`, the agent waits for go() after announcing it. */
  send(command: string, args: ReadonlyArray<string | number> = [], opts: { hold?: boolean } = {}): AgentCommand {
    const id = this.nextId++;
    let heldResolve!: () => void;
    let startedResolve!: (t: number) => void;
    let doneResolve!: (r: AgentReply) => void;
    let failAll!: (e: Error) => void;
    const held = new Promise<void>((r, j) => {
      heldResolve = r;
      failAll = j;
    });
    const started = new Promise<number>((r) => (startedResolve = r));
    const done = new Promise<AgentReply>((r, j) => {
      doneResolve = r;
      const prev = failAll;
      failAll = (e) => {
        prev(e);
        j(e);
      };
    });
    // Callers often await only `done`; keep the other promises from raising unhandled rejections.
    held.catch(() => {});
    done.catch(() => {});
    started.catch(() => {});
    const cmd: AgentCommand = {
      id,
      command,
      held,
      started,
      done,
      go: () => this.write(`${id} go`),
    };
    if (this.closedError || !this.socket) {
      const e = new AgentError(`agent channel is closed; cannot send "${command}"`, command);
      failAll(e);
      return cmd;
    }
    this.waiting.set(id, { command, held: heldResolve, started: startedResolve, done: doneResolve, fail: failAll });
    const encoded = args.map((a) => Buffer.from(String(a)).toString('base64') || '=');
    this.write([String(id), ...(opts.hold ? ['hold'] : []), command, ...encoded].join(' '));
    return cmd;
  }

  /** Send and wait for completion, failing after timeoutMs. */
  async call(command: string, args: ReadonlyArray<string | number> = [], timeoutMs = 60_000): Promise<AgentReply> {
    const c = this.send(command, args);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AgentError(`agent: no reply to "${command}" within ${timeoutMs} ms`, command)), timeoutMs);
    });
    try {
      return await Promise.race([c.done, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private write(line: string): void {
    this.transcript.push(`${Date.now()} > ${line.length > 300 ? line.slice(0, 300) + '...' : line}`);
    this.socket?.write(line + '\n');
  }

  close(): void {
    this.socket?.destroy();
  }
}
