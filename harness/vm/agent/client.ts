import { ChannelError, SocketChannel, type PendingRequest } from '../channel.ts';
import { LineSplitter } from '../unix-socket.ts';
import { withTimeout } from '../../util/timeout.ts';
import { encodeCommand, parseAgentLine, parseHello, type AgentArg, type StepOptions } from './protocol.ts';

export type { StepOptions } from './protocol.ts';

/** The agent channel closed or misbehaved; keeps the command and what came back. */
export class AgentError extends ChannelError {
  constructor(
    message: string,
    readonly command?: string,
    readonly received?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** No "ready", start marker or reply within the time allowed. */
export class AgentTimeoutError extends AgentError {
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    command?: string,
  ) {
    super(`agent: no ${what} within ${timeoutMs} ms`, command);
  }
}

/** A call made before the channel was connected. */
export class AgentStateError extends AgentError {}

export interface AgentReply {
  exitCode: number;
  /** The command's stdout and stderr, interleaved. */
  output: string;
}

/** What the agent says when it starts (and answers to `hello`). */
export interface AgentReadyInfo {
  release: string;
  /** Guest uptime in seconds (/proc/uptime) when the agent started. */
  uptime: number;
}

/**
 * A command in flight. `held` resolves when a held command waits for
 * `go()`; `started` resolves with the host time (performance.now()) at which
 * the start marker arrived; `done` with the exit status and output. If the
 * channel closes first (the VM was killed), all three reject with AgentError.
 */
export interface AgentCommand {
  id: number;
  command: string;
  held: Promise<void>;
  started: Promise<number>;
  done: Promise<AgentReply>;
  /** Let a held command start. */
  go(): void;
}

/** What the workload needs of an agent: the QEMU machine's client and a test's fake both provide it. */
export interface AgentPort {
  send(command: string, args?: readonly AgentArg[], opts?: StepOptions): AgentCommand;
  call(command: string, args?: readonly AgentArg[], timeoutMs?: number): Promise<AgentReply>;
  readonly closed: boolean;
}

interface Waiting extends PendingRequest {
  held: () => void;
  started: (t: number) => void;
  done: (r: AgentReply) => void;
}

/**
 * Host side of the guest agent (vm-images/guest/qcrash-agent, protocol in
 * protocol.ts). One channel, many commands in flight in principle, but the
 * agent runs them one at a time in the order sent.
 */
export class AgentClient extends SocketChannel implements AgentPort {
  protected readonly protocol = 'agent';
  private readonly lines = new LineSplitter();
  private nextId = 1;
  private readyInfo?: AgentReadyInfo;
  private readyWaiters: Array<{ resolve: (i: AgentReadyInfo) => void; reject: (e: Error) => void }> = [];

  protected disconnected(what: string | undefined, cause: Error | undefined): Error {
    const why = cause ? `: ${cause.message}` : '';
    return new AgentError(
      what ? `agent channel closed during "${what}"${why}` : `agent channel closed (the VM stopped or the guest died)${why}`,
      what,
      undefined,
      cause ? { cause } : undefined,
    );
  }

  protected stateError(message: string): Error {
    return new AgentStateError(message);
  }

  async connect(path: string, timeoutMs = 10_000, signal?: AbortSignal): Promise<void> {
    await this.open(path, timeoutMs, signal, 'utf8');
    // The agent speaks first ("ready"), but the host may send at once.
    this.markRunning();
  }

  protected onData(chunk: string): void {
    for (const line of this.lines.push(chunk)) if (line) this.onLine(line);
  }

  private onLine(line: string): void {
    const t = performance.now();
    this.transcript.received(line);
    const msg = parseAgentLine(line);
    if (msg.kind === 'ready') {
      this.readyInfo = parseHello(msg.info);
      for (const w of this.readyWaiters) w.resolve(this.readyInfo);
      this.readyWaiters = [];
      return;
    }
    if (msg.kind === 'unknown') return;
    const w = this.pending.get(msg.id) as Waiting | undefined;
    if (!w) return;
    if (msg.kind === 'held') w.held();
    else if (msg.kind === 'start') w.started(t);
    else {
      this.pending.delete(msg.id);
      w.done({ exitCode: msg.exitCode, output: msg.output });
    }
  }

  protected override onClosed(): void {
    for (const w of this.readyWaiters) w.reject(new AgentError('agent channel closed before the agent was ready'));
    this.readyWaiters = [];
  }

  /** The agent's "ready" line: it sends it once, when it starts after boot. */
  waitReady(timeoutMs: number): Promise<AgentReadyInfo> {
    if (this.readyInfo) return Promise.resolve(this.readyInfo);
    if (this.closed) return Promise.reject(new AgentError('agent channel closed before the agent was ready'));
    const ready = new Promise<AgentReadyInfo>((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
    return withTimeout(ready, timeoutMs, () => new AgentTimeoutError('"ready" line', timeoutMs));
  }

  /** Ask a running agent who it is (a VM restored from a snapshot sends no "ready"). */
  async hello(timeoutMs: number): Promise<AgentReadyInfo> {
    const r = await this.call('hello', [], timeoutMs);
    return parseHello(r.output);
  }

  /** Send a command; with `hold`, the agent announces it and waits for go() before its start marker. */
  send(command: string, args: readonly AgentArg[] = [], opts: StepOptions = {}): AgentCommand {
    const id = this.nextId++;
    const d = {} as { held: () => void; started: (t: number) => void; done: (r: AgentReply) => void };
    const held = new Promise<void>((r) => (d.held = r));
    const started = new Promise<number>((r) => (d.started = r));
    const done = new Promise<AgentReply>((r) => (d.done = r));
    // A command the VM died under fails all three; callers often await only one.
    const rejecters: Array<(e: Error) => void> = [];
    const withReject = <T>(p: Promise<T>) => Promise.race([p, new Promise<never>((_, j) => rejecters.push(j))]);
    const cmd: AgentCommand = {
      id,
      command,
      held: withReject(held),
      started: withReject(started),
      done: withReject(done),
      go: () => {
        // The held command never starts when the channel is gone: the guest agent drops it too.
        if (this.state === 'running') this.write(`${id} go\n`);
      },
    };
    for (const p of [cmd.held, cmd.started, cmd.done]) p.catch(() => {});
    const fail = (e: Error) => rejecters.forEach((j) => j(e));
    try {
      this.ensureRunning(`"${command}"`);
    } catch (e) {
      fail(e as Error);
      return cmd;
    }
    const waiting: Waiting = { what: command, fail, ...d };
    this.pending.set(id, waiting);
    this.write(`${encodeCommand(id, command, args, opts)}\n`);
    return cmd;
  }

  /** Send and wait for completion, failing after timeoutMs. */
  async call(command: string, args: readonly AgentArg[] = [], timeoutMs = 60_000): Promise<AgentReply> {
    return withTimeout(
      this.send(command, args).done,
      timeoutMs,
      () => new AgentTimeoutError(`reply to "${command}"`, timeoutMs, command),
    );
  }
}
