import { writeFile } from 'node:fs/promises';
import type { Machine, MachineLauncher, MachineSpec, AgentHello } from '../../harness/vm/machine/machine.ts';
import type { AgentCommand, AgentPort, AgentReply } from '../../harness/vm/agent/client.ts';
import { AgentError } from '../../harness/vm/agent/client.ts';
import type { AgentArg } from '../../harness/vm/agent/protocol.ts';

/**
 * A scripted stand-in for a QEMU machine, for unit tests of what sits above
 * the machine layer (the workload's kill logic, the case runner's verdicts,
 * validate's judgement). Its agent answers each command after a scripted
 * delay; a kill fails what is still running, as a dead VM would. It never
 * replaces the real-VM tests: QEMU, QMP and the guest agent are tested for
 * real in test/vm/.
 */
interface FakeReply {
  exitCode?: number;
  output?: string;
  /** How long the command runs after its start marker (default 5 ms). */
  ms?: number;
  /** Never finishes (a wedged guest). */
  hang?: boolean;
}

export type FakeScript = (command: string, args: string[], machine: FakeMachine) => FakeReply | undefined;

export interface FakeMachineOptions {
  script?: FakeScript;
  console?: string;
  /** Called when the machine is killed (the crash), e.g. to damage its disk. */
  onKill?: (machine: FakeMachine) => Promise<void> | void;
  gdbSocket?: string;
}

/** One command as the fake agent saw it. */
interface SeenCommand {
  command: string;
  args: string[];
  hold: boolean;
  /** The vCPU the step was pinned to, and the writers' progress interval, as sent. */
  cpu?: number;
  progress?: number;
  /** Host times (performance.now()) of the markers. */
  heldAt?: number;
  startedAt?: number;
  doneAt?: number;
}

class FakeAgent implements AgentPort {
  readonly seen: SeenCommand[] = [];
  private nextId = 1;
  private failers = new Set<(e: Error) => void>();
  closed = false;
  constructor(private readonly machine: FakeMachine) {}

  send(
    command: string,
    args: readonly AgentArg[] = [],
    opts: { hold?: boolean; cpu?: number; progress?: number } = {},
  ): AgentCommand {
    const id = this.nextId++;
    const seen: SeenCommand = {
      command,
      args: args.map(String),
      hold: opts.hold ?? false,
      ...(opts.cpu !== undefined ? { cpu: opts.cpu } : {}),
      ...(opts.progress !== undefined ? { progress: opts.progress } : {}),
    };
    this.seen.push(seen);
    let go!: () => void;
    const released = new Promise<void>((r) => (go = r));
    let fail!: (e: Error) => void;
    const failed = new Promise<never>((_, j) => (fail = j));
    failed.catch(() => {});
    this.failers.add(fail);
    const race = <T>(p: Promise<T>) => Promise.race([p, failed]);
    const held = race(
      Promise.resolve().then(() => {
        if (seen.hold) seen.heldAt = performance.now();
      }),
    );
    const started = race(
      (async () => {
        await held;
        if (seen.hold) await released;
        await new Promise((r) => setTimeout(r, 1));
        seen.startedAt = performance.now();
        return seen.startedAt;
      })(),
    );
    const done = race(
      (async (): Promise<AgentReply> => {
        await started;
        const reply = this.machine.options.script?.(command, seen.args, this.machine) ?? {};
        if (reply.hang) await new Promise(() => {});
        await new Promise((r) => setTimeout(r, reply.ms ?? 5));
        seen.doneAt = performance.now();
        this.failers.delete(fail);
        return { exitCode: reply.exitCode ?? 0, output: reply.output ?? '' };
      })(),
    );
    if (this.closed) fail(new AgentError(`agent channel is closed; cannot send "${command}"`, command));
    for (const p of [held, started, done]) p.catch(() => {});
    return { id, command, held, started, done, go: () => go() };
  }

  async call(command: string, args: readonly AgentArg[] = []): Promise<AgentReply> {
    return this.send(command, args).done;
  }

  close(): void {
    this.closed = true;
    for (const f of this.failers) f(new AgentError('agent channel closed (the VM stopped or the guest died)'));
    this.failers.clear();
  }
}

export class FakeMachine implements Machine {
  readonly agent: FakeAgent;
  /** A spec with restoreFrom gets a restored machine's hello (phases.restored), as Vm gives one. */
  readonly hello: AgentHello;
  ended?: 'killed' | 'powered-off';
  shutdowns = 0;

  constructor(
    readonly spec: MachineSpec,
    readonly options: FakeMachineOptions = {},
  ) {
    this.agent = new FakeAgent(this);
    this.hello = {
      release: 'fake',
      uptime: 1,
      bootMs: 1,
      phases: { qmp: 0, agentPort: 0, ...(spec.restoreFrom ? { restored: 1 } : {}), ready: 1 },
    };
  }

  get gdbSocket(): string | undefined {
    return this.spec.gdb ? (this.options.gdbSocket ?? '/nonexistent/gdb.sock') : undefined;
  }

  /** The commands the agent received, in order. */
  get commands(): string[] {
    return this.agent.seen.map((c) => c.command);
  }

  async kill() {
    if (!this.ended) {
      this.ended = 'killed';
      this.agent.close();
      await this.options.onKill?.(this);
    }
    return { event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } };
  }

  async powerOff() {
    this.ended ??= 'powered-off';
    this.agent.close();
    return { event: 'SHUTDOWN', data: { guest: true, reason: 'guest-reset' } };
  }

  async saveState(file: string): Promise<void> {
    await writeFile(file, 'fake machine state\n');
  }

  async consoleText(): Promise<string> {
    return this.options.console ?? '';
  }

  async saveArtefacts(prefix: string): Promise<void> {
    await writeFile(`${prefix}console.log`, this.options.console ?? '');
    await writeFile(`${prefix}agent.log`, this.agent.seen.map((c) => `${c.command} ${c.args.join(' ')}`).join('\n') + '\n');
  }

  async shutdown(): Promise<void> {
    this.shutdowns++;
    this.agent.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}

/** Hands out fake machines; `make` decides each one's script from its spec. */
export class FakeLauncher implements MachineLauncher {
  readonly machines: FakeMachine[] = [];
  constructor(private readonly make: (spec: MachineSpec, n: number) => FakeMachineOptions | Error = () => ({})) {}

  async launch(spec: MachineSpec): Promise<FakeMachine> {
    const o = this.make(spec, this.machines.length);
    if (o instanceof Error) throw o;
    const m = new FakeMachine(spec, o);
    this.machines.push(m);
    return m;
  }
}
