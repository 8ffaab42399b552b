import type { Socket } from 'node:net';
import type { Step } from '../scenario/model.ts';
import { InfraError } from '../util/errors.ts';
import { connectUnix, LineSplitter } from './unix-socket.ts';
import { encodeCommand, parseAgentLine, parseHello, stepCommand, type AgentArg } from './agent-protocol.ts';

/** The agent channel closed or misbehaved; keeps the command and what came back. */
export class AgentError extends InfraError {
  constructor(
    message: string,
    readonly command?: string,
    readonly received?: string,
  ) {
    super(message);
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

export interface BeginOptions {
  /** Seed for steps whose content is per case (background writers). */
  seed?: number;
  /** Announce the step ("held") and wait for go() before its start marker. */
  hold?: boolean;
}

export interface RunOptions extends BeginOptions {
  /** Called at the start marker with its host time (performance.now()). */
  onStart?: (t: number) => void;
  timeoutMs?: number;
}

interface Waiting {
  command: string;
  held: () => void;
  started: (t: number) => void;
  done: (r: AgentReply) => void;
  fail: (e: Error) => void;
}

/**
 * Host side of the guest agent (vm-images/guest/qcrash-agent, protocol in
 * agent-protocol.ts). One channel, many commands in flight in principle,
 * but the agent runs them one at a time in the order sent.
 */
export class AgentClient {
  private socket?: Socket;
  private readonly lines = new LineSplitter();
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private closedError?: AgentError;
  private readyInfo?: AgentReadyInfo;
  private readyWaiters: Array<{ resolve: (i: AgentReadyInfo) => void; reject: (e: Error) => void }> = [];
  /** Every line sent and received, with wall-clock ms, for the case's artefacts. */
  readonly transcript: string[] = [];

  async connect(path: string, timeoutMs = 10_000, signal?: AbortSignal): Promise<void> {
    const socket = await connectUnix(path, timeoutMs, signal);
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      for (const line of this.lines.push(c)) if (line) this.onLine(line);
    });
    socket.on('close', () => this.onClose());
    socket.on('error', () => {
      /* 'close' follows and fails what is pending */
    });
  }

  private onLine(line: string): void {
    const t = performance.now();
    this.log('<', line);
    const msg = parseAgentLine(line);
    if (msg.kind === 'ready') {
      this.readyInfo = parseHello(msg.info);
      for (const w of this.readyWaiters) w.resolve(this.readyInfo);
      this.readyWaiters = [];
      return;
    }
    if (msg.kind === 'unknown') return;
    const w = this.waiting.get(msg.id);
    if (!w) return;
    if (msg.kind === 'held') w.held();
    else if (msg.kind === 'start') w.started(t);
    else {
      this.waiting.delete(msg.id);
      w.done({ exitCode: msg.exitCode, output: msg.output });
    }
  }

  private onClose(): void {
    if (this.closedError) return;
    this.closedError = new AgentError('agent channel closed (the VM stopped or the guest died)');
    for (const w of this.waiting.values()) w.fail(new AgentError(`agent channel closed during "${w.command}"`, w.command));
    this.waiting.clear();
    for (const w of this.readyWaiters) w.reject(new AgentError('agent channel closed before the agent was ready'));
    this.readyWaiters = [];
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** The agent's "ready" line: it sends it once, when it starts after boot. */
  waitReady(timeoutMs: number): Promise<AgentReadyInfo> {
    if (this.readyInfo) return Promise.resolve(this.readyInfo);
    if (this.closedError) return Promise.reject(new AgentError('agent channel closed before the agent was ready'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((w) => w.resolve !== done);
        reject(new AgentTimeoutError('"ready" line', timeoutMs));
      }, timeoutMs);
      const done = (i: AgentReadyInfo) => {
        clearTimeout(timer);
        resolve(i);
      };
      this.readyWaiters.push({
        resolve: done,
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  /** Ask a running agent who it is (a VM restored from a snapshot sends no "ready"). */
  async hello(timeoutMs: number): Promise<AgentReadyInfo> {
    const r = await this.call('hello', [], timeoutMs);
    return parseHello(r.output);
  }

  /** Send a raw agent command; with `hold`, the agent waits for go() after announcing it. */
  send(command: string, args: readonly AgentArg[] = [], opts: { hold?: boolean } = {}): AgentCommand {
    const id = this.nextId++;
    const d = {} as Waiting;
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
      go: () => this.write(`${id} go`),
    };
    d.command = command;
    d.fail = (e) => rejecters.forEach((j) => j(e));
    for (const p of [cmd.held, cmd.started, cmd.done]) p.catch(() => {});
    if (this.closedError || !this.socket) {
      d.fail(new AgentError(`agent channel is closed; cannot send "${command}"`, command));
      return cmd;
    }
    this.waiting.set(id, d);
    this.write(encodeCommand(id, command, args, opts.hold ?? false));
    return cmd;
  }

  /** Send and wait for completion, failing after timeoutMs. */
  async call(command: string, args: readonly AgentArg[] = [], timeoutMs = 60_000): Promise<AgentReply> {
    return withTimeout(this.send(command, args).done, timeoutMs, () => new AgentTimeoutError(`reply to "${command}"`, timeoutMs, command));
  }

  /** Start a scenario step; the handle exposes its hold, start marker and completion. */
  begin(step: Step, opts: BeginOptions = {}): AgentCommand {
    const [command, args] = stepCommand(step, opts.seed ?? 0);
    return this.send(command, args, { hold: opts.hold ?? false });
  }

  /** Run a scenario step to completion. A held step is released at once (use begin() to act in between). */
  async run(step: Step, opts: RunOptions = {}): Promise<AgentReply> {
    const c = this.begin(step, opts);
    if (opts.hold) void c.held.then(() => c.go(), () => {});
    if (opts.onStart) void c.started.then(opts.onStart, () => {});
    const timeoutMs = opts.timeoutMs ?? 120_000;
    return withTimeout(c.done, timeoutMs, () => new AgentTimeoutError(`completion of step "${step.name}"`, timeoutMs, c.command));
  }

  private write(line: string): void {
    this.log('>', line);
    this.socket?.write(line + '\n');
  }

  private log(dir: '<' | '>', line: string): void {
    this.transcript.push(`${Date.now()} ${dir} ${line.length > 300 ? line.slice(0, 300) + '...' : line}`);
  }

  close(): void {
    this.socket?.destroy();
    this.onClose();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
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
