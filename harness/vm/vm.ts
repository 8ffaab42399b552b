import { execa, type ResultPromise } from 'execa';
import { readFile, access, copyFile, writeFile, open } from 'node:fs/promises';
import type { KernelInfo } from '../kernel/kernel.ts';
import { detectAccel, type Accel } from '../doctor/accel.ts';
import { InfraError } from '../util/errors.ts';
import { onCleanup } from '../util/cleanup.ts';
import { TempDir } from '../util/tempdir.ts';
import { tool } from '../util/tools.ts';
import { QmpClient, type QmpEvent } from './qmp-client.ts';
import { QmpDisconnectedError } from './qmp-errors.ts';
import { AgentClient } from './agent.ts';
import { qemuArgv, type MachineName, type VmDisk, type VmPaths } from './argv.ts';
import { finishRestore, incomingFd } from './snapshot.ts';

/** QEMU did not come up: keeps argv, exit code, QEMU's stderr and the console's last lines. */
export class VmLaunchError extends InfraError {
  constructor(
    message: string,
    readonly argv: string[],
    readonly qemuExitCode: number | undefined,
    readonly consoleTail: string,
    readonly stderr: string,
    cause?: unknown,
  ) {
    super(
      `${message}${stderr ? `\nqemu stderr: ${stderr.trim().slice(-600)}` : ''}${consoleTail ? `\nconsole tail:\n${consoleTail}` : ''}`,
      cause === undefined ? undefined : { cause },
    );
  }
}

export interface VmOptions {
  kernel: KernelInfo;
  initrd: string;
  /** With `writeLog`, every write and flush to the disk is recorded there (argv.ts). */
  disk: VmDisk;
  name?: string;
  memoryMb?: number;
  machine?: MachineName;
  /** Extra kernel command-line words. */
  append?: string[];
  /** Extra QEMU arguments, each element one argument. */
  extraArgs?: string[];
  /** Expose the gdbstub on a unix socket in the VM's private dir (`vm.paths.gdb`). */
  gdb?: boolean;
  /** Restore this saved VM state (vm/snapshot.ts) instead of booting. */
  restoreFrom?: string;
  /** Start with vCPUs stopped (-S); the caller resumes with QMP `cont`. */
  startStopped?: boolean;
  /** Wait for the guest agent (default true). */
  waitAgent?: boolean;
  bootTimeoutMs?: number;
  /** Default: KVM when it works here, else TCG; QCRASH_ACCEL=tcg|kvm forces one. */
  accel?: Accel;
}

export interface AgentHello {
  release: string;
  /** Guest uptime in seconds when the agent started (a restored guest reports the snapshot's). */
  uptime: number;
  /** Host milliseconds from starting QEMU to the agent being ready. */
  bootMs: number;
  /**
   * Where bootMs went, in host milliseconds since QEMU was started: QMP
   * answered, the agent port connected, the saved state loaded and the
   * guest resumed (restores only), the agent answered.
   */
  phases: { qmp: number; agentPort: number; restored?: number; ready: number };
}

export interface ShutdownOptions {
  /** First ask the guest to power off (sync, umount, poweroff -f) through the agent. */
  poweroff?: boolean;
  /** Per stage: poweroff, quit, SIGTERM each get this long before the next. */
  stageTimeoutMs?: number;
}

/**
 * One QEMU VM. `launch` builds argv, starts QEMU under `setpriv --pdeathsig
 * KILL` (so a SIGKILLed harness takes QEMU with it), connects QMP and the
 * agent and waits until the agent is ready. `kill()` is the crash;
 * `powerOff()` the clean end; `shutdown()` (also `await using`, and process
 * signals through onCleanup) always runs the same teardown and removes the
 * VM's private dir.
 */
export class Vm implements AsyncDisposable {
  readonly qmp = new QmpClient();
  readonly agent = new AgentClient();
  hello?: AgentHello;
  /** The kernel has no ACPI: power off with `reboot -f` (QEMU runs with -no-reboot). */
  acpiLess: boolean;
  private exitInfo?: { exitCode?: number; signal?: string };
  private stderrText = '';
  /** Aborted when QEMU exits: ends connection retries on sockets a dead QEMU left behind. */
  private readonly exitSignal = new AbortController();
  private disposed = false;
  private readonly unregister: () => void;

  private constructor(
    readonly argv: string[],
    readonly dir: TempDir,
    readonly paths: VmPaths,
    readonly accel: Accel,
    readonly kernel: KernelInfo,
    private readonly proc: ResultPromise,
    readonly startedAt: number,
  ) {
    this.acpiLess = !kernel.acpi;
    this.unregister = onCleanup(() => this.shutdown());
    proc.stderr?.on('data', (d: Buffer | string) => {
      this.stderrText = (this.stderrText + String(d)).slice(-8192);
    });
    const exited = (info: { exitCode?: number; signal?: string }) => {
      this.exitInfo = info;
      this.exitSignal.abort(new InfraError(`QEMU exited (${this.exitDescription()})`));
    };
    proc.then(
      (r) => exited({ exitCode: r.exitCode, signal: r.signal }),
      (e: { exitCode?: number; signal?: string }) => exited({ exitCode: e.exitCode, signal: e.signal }),
    );
  }

  static async launch(o: VmOptions): Promise<Vm> {
    const accel = o.accel ?? (await detectAccel()).accel;
    const qemu = await tool('qemu-system-x86_64');
    const setpriv = await tool('setpriv');
    // Opened before the VM's temp dir exists, so a missing state file leaves nothing behind.
    const state = o.restoreFrom ? await open(o.restoreFrom, 'r').catch((e: Error) => {
      throw new InfraError(`cannot read the saved VM state ${o.restoreFrom}: ${e.message}`);
    }) : undefined;
    // blklogwrites neither creates its log file nor cuts an old one short: start empty.
    if (o.disk.writeLog) await writeFile(o.disk.writeLog, '');
    const dir = await TempDir.create('vm');
    const paths: VmPaths = {
      qmp: dir.join('qmp.sock'),
      agent: dir.join('agent.sock'),
      console: dir.join('console.log'),
      pidfile: dir.join('qemu.pid'),
      ...(o.gdb ? { gdb: dir.join('gdb.sock') } : {}),
    };
    const argv = [
      qemu,
      ...qemuArgv({
        kernel: o.kernel,
        initrd: o.initrd,
        disk: o.disk,
        paths,
        accel,
        memoryMb: o.memoryMb ?? 256,
        name: o.name ?? 'qcrash',
        ...(o.machine ? { machine: o.machine } : {}),
        ...(o.append ? { append: o.append } : {}),
        ...(o.extraArgs ? { extraArgs: o.extraArgs } : {}),
        // A restore reads the saved state from an inherited descriptor while
        // QEMU starts, and stays paused (-S) until the agent's port is connected.
        ...(o.restoreFrom ? { incoming: `fd:${incomingFd}`, startStopped: true } : {}),
        ...(o.startStopped ? { startStopped: true } : {}),
      }),
    ];
    // execa hands a descriptor number to the child as is (node's spawn does);
    // its types only admit numbers for fds 0-2.
    const inherited = (state ? [state.fd] : []) as unknown as Array<'ignore'>;
    const startedAt = performance.now();
    // setpriv execs QEMU, so the child's pid is QEMU's.
    const proc = execa(setpriv, ['--pdeathsig', 'KILL', '--', ...argv], {
      reject: false,
      stdio: ['ignore', 'ignore', 'pipe', ...inherited],
      encoding: 'utf8',
      buffer: false,
      cleanup: true,
    });
    // QEMU holds its own copy of the descriptor.
    await state?.close();
    const vm = new Vm(argv, dir, paths, accel, o.kernel, proc, startedAt);
    try {
      await vm.connect(o.bootTimeoutMs ?? (accel === 'kvm' ? 30_000 : 120_000), o.waitAgent ?? true, o.restoreFrom);
    } catch (e) {
      const err = await vm.launchError(e);
      await vm.shutdown();
      throw err;
    }
    return vm;
  }

  private async connect(timeoutMs: number, waitAgent: boolean, restoreFrom?: string): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const left = () => Math.max(1000, deadline - performance.now());
    await this.waitForSocket(this.paths.qmp, deadline);
    const signal = this.exitSignal.signal;
    await this.qmp.connect(this.paths.qmp, left(), signal);
    const qmpAt = performance.now() - this.startedAt;
    // The agent's host side connects before the guest can write to the port
    // (its writes block until then), and before a restored guest resumes.
    await this.waitForSocket(this.paths.agent, deadline);
    await this.agent.connect(this.paths.agent, left(), signal);
    const agentAt = performance.now() - this.startedAt;
    if (restoreFrom) await finishRestore(this.qmp, restoreFrom, left());
    const restoredAt = performance.now() - this.startedAt;
    if (!waitAgent) return;
    // A restored guest's agent said "ready" before the snapshot: ask it instead.
    const info = restoreFrom ? await this.agent.hello(left()) : await this.agent.waitReady(left());
    const bootMs = performance.now() - this.startedAt;
    this.hello = { ...info, bootMs, phases: { qmp: qmpAt, agentPort: agentAt, ...(restoreFrom ? { restored: restoredAt } : {}), ready: bootMs } };
  }

  private async waitForSocket(path: string, deadline: number): Promise<void> {
    while (performance.now() < deadline) {
      if (this.exitInfo) throw new InfraError(`QEMU exited (${this.exitDescription()}) before it opened ${path}`);
      if (await access(path).then(() => true, () => false)) return;
      // Short polls: QEMU creates its sockets within milliseconds, and a
      // restored VM is ready in a few hundred.
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new InfraError(`QEMU did not create ${path} in time`);
  }

  private async launchError(cause: unknown): Promise<VmLaunchError> {
    // Give QEMU a moment to exit and print why.
    await this.waitExit(500);
    return new VmLaunchError(
      `VM did not start${this.exitInfo ? ` (QEMU ${this.exitDescription()})` : ''}: ${cause instanceof Error ? cause.message : String(cause)}`,
      this.argv,
      this.exitInfo?.exitCode,
      await this.consoleTail(),
      this.stderrText,
      cause,
    );
  }

  private exitDescription(): string {
    return this.exitInfo?.signal ? `killed by ${this.exitInfo.signal}` : `exit code ${this.exitInfo?.exitCode}`;
  }

  /** QEMU's pid (setpriv exec'ed it). */
  get pid(): number | undefined {
    return this.proc.pid;
  }

  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  get exitCode(): number | undefined {
    return this.exitInfo?.exitCode;
  }

  /** QEMU's stderr so far (the last 8 KiB). */
  get stderr(): string {
    return this.stderrText;
  }

  get consoleLogPath(): string {
    return this.paths.console;
  }

  async consoleText(): Promise<string> {
    return readFile(this.paths.console, 'utf8').catch(() => '');
  }

  async consoleTail(lines = 30): Promise<string> {
    return (await this.consoleText()).split('\n').slice(-lines).join('\n');
  }

  /** Every QMP message sent and received, as JSONL. */
  qmpTranscript(): string {
    return this.qmp.transcriptJsonl();
  }

  /**
   * The crash: freeze the vCPUs (`stop`) so nothing more reaches the disk,
   * then `quit`. Returns the SHUTDOWN event (reason host-qmp-quit). If the
   * guest already ended the VM (a panic with -no-reboot), returns that
   * earlier SHUTDOWN instead, whose data says guest: true.
   */
  async kill(timeoutMs = 10_000): Promise<QmpEvent | undefined> {
    if (!this.exitInfo && !this.qmp.closed) {
      try {
        await this.qmp.execute('stop', undefined, timeoutMs);
        await this.qmp.quit(timeoutMs);
      } catch (e) {
        if (!(e instanceof QmpDisconnectedError)) throw e;
      }
    }
    if (!(await this.waitExit(timeoutMs))) throw new InfraError(`QEMU (pid ${this.pid}) did not exit after quit`);
    return this.qmp.eventLog.findLast((e) => e.event === 'SHUTDOWN');
  }

  /** Clean power-off through the agent (sync, umount, poweroff -f or reboot -f). Returns the SHUTDOWN event. */
  async powerOff(timeoutMs = 60_000): Promise<QmpEvent | undefined> {
    const since = this.qmp.eventLog.length;
    const shutdown = this.qmp.waitEvent('SHUTDOWN', timeoutMs, since).catch(() => undefined);
    this.agent.send('poweroff', [this.acpiLess ? 'reboot' : 'acpi']);
    const ev = await shutdown;
    await this.waitExit(timeoutMs);
    return ev ?? this.qmp.eventLog.slice(since).find((e) => e.event === 'SHUTDOWN');
  }

  async waitExit(timeoutMs: number): Promise<boolean> {
    if (this.exitInfo) return true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.proc, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    return this.exitInfo !== undefined;
  }

  /** Copy the console log and the QMP and agent transcripts into a case folder: `${prefix}console.log` etc. */
  async saveArtefacts(prefix: string): Promise<void> {
    await copyFile(this.paths.console, `${prefix}console.log`).catch(() => writeFile(`${prefix}console.log`, ''));
    await this.qmp.transcript.save(`${prefix}qmp.jsonl`);
    await writeFile(`${prefix}agent.log`, this.agent.transcript.join('\n') + '\n');
  }

  /**
   * The one teardown, whatever state the VM is in: optionally a guest
   * poweroff, then QMP quit, SIGTERM, SIGKILL, each only if QEMU still runs;
   * then close the channels and remove the private dir. Idempotent.
   */
  async shutdown(opts: ShutdownOptions = {}): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.unregister();
    const stage = opts.stageTimeoutMs ?? 3000;
    try {
      if (opts.poweroff && !this.exitInfo && !this.agent.closed) await this.powerOff(stage * 4).catch(() => undefined);
      if (!this.exitInfo && !this.qmp.closed) await this.qmp.quit(stage).catch(() => false);
      if (!(await this.waitExit(stage))) {
        this.proc.kill('SIGTERM');
        if (!(await this.waitExit(stage))) {
          this.proc.kill('SIGKILL');
          await this.waitExit(5000);
        }
      }
    } finally {
      this.qmp.close();
      this.agent.close();
      await this.dir.remove();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}
