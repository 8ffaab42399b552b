import { execa, type ResultPromise } from 'execa';
import { readFile, access, copyFile, writeFile, open, type FileHandle } from 'node:fs/promises';
import { InfraError } from '../../util/errors.ts';
import { onCleanup, shuttingDown } from '../../util/cleanup.ts';
import { TempDir } from '../../util/tempdir.ts';
import { tool } from '../../util/tools.ts';
import { QmpClient } from '../qmp/client.ts';
import type { QmpEvent } from '../qmp/protocol.ts';
import { QmpDisconnectedError } from '../qmp/errors.ts';
import { AgentClient } from '../agent/client.ts';
import { detectAccel, type Accel } from './accel.ts';
import { qemuArgv, writeLogErrorHint, type VmPaths } from './argv.ts';
import { finishRestore, incomingFd, saveVmState } from './snapshot.ts';
import { AbnormalShutdownError, VmFaultError, VmLaunchError, VmRestoreError } from './errors.ts';
import type { AgentHello, Machine, MachineSpec, ShutdownEvent } from './machine.ts';

export { VmLaunchError, VmRestoreError, AbnormalShutdownError, VmFaultError } from './errors.ts';
export type { AgentHello, MachineSpec } from './machine.ts';

/** What QEMU prints when it cannot load a saved state (truncated, corrupt, or not a migration stream at all). */
const restoreLoadFailure = /load of migration failed|Not a migration stream|error while loading state/;

/** `Vm.launch` takes a machine spec; the role defaults to a test machine for direct use. */
export type VmOptions = Omit<MachineSpec, 'role'> & { role?: MachineSpec['role']; name?: string };

/** The saved state a restore reads, opened for QEMU to inherit; undefined for a fresh boot. */
async function openSavedState(spec: MachineSpec): Promise<FileHandle | undefined> {
  if (!spec.restoreFrom) return undefined;
  const file = spec.restoreFrom;
  return open(file, 'r').catch((e: Error) => {
    throw new VmRestoreError(`cannot read the saved VM state ${file}: ${e.message}`, file, [], undefined, '', '', e);
  });
}

/** QEMU's arguments for a machine spec (without the QEMU binary). */
function vmArgv(spec: MachineSpec, paths: VmPaths, accel: Accel, name: string): string[] {
  return qemuArgv({
    kernel: spec.kernel,
    initrd: spec.initrd,
    disk: spec.disk,
    paths,
    accel,
    memoryMb: spec.memoryMb ?? 256,
    ...(spec.cpus && spec.cpus !== 1 ? { cpus: spec.cpus } : {}),
    name,
    ...(spec.append ? { append: spec.append } : {}),
    ...(spec.extraArgs ? { extraArgs: spec.extraArgs } : {}),
    // A restore reads the saved state from an inherited descriptor while
    // QEMU starts, and stays paused (-S) until the agent's port is connected.
    ...(spec.restoreFrom ? { incoming: `fd:${incomingFd}`, startStopped: true } : {}),
    ...(spec.startStopped ? { startStopped: true } : {}),
  });
}

/** Start QEMU under `setpriv --pdeathsig KILL`, handing it the saved state's descriptor if there is one. */
function spawnQemu(setpriv: string, argv: string[], state: FileHandle | undefined): ResultPromise {
  // execa hands a descriptor number to the child as is (node's spawn does);
  // its types only admit numbers for fds 0-2.
  const inherited = (state ? [state.fd] : []) as unknown as Array<'ignore'>;
  // QEMU creates its sockets and console log with the umask it inherits:
  // 077, so nothing in the VM's private dir is open to other users even
  // for a moment. spawn() is synchronous, so the umask is back at once.
  const umask = process.umask(0o077);
  try {
    // setpriv execs QEMU, so the child's pid is QEMU's.
    return execa(setpriv, ['--pdeathsig', 'KILL', '--', ...argv], {
      reject: false,
      stdio: ['ignore', 'ignore', 'pipe', ...inherited],
      encoding: 'utf8',
      buffer: false,
      cleanup: true,
    });
  } finally {
    process.umask(umask);
  }
}

/**
 * One QEMU VM, the real Machine. `launch` builds argv, starts QEMU under
 * `setpriv --pdeathsig KILL` (so a SIGKILLed harness takes QEMU with it),
 * connects QMP and the agent and waits until the agent is ready. `kill()` is
 * the crash; `powerOff()` the clean end; `shutdown()` (also `await using`,
 * and process signals through onCleanup) always runs the same teardown and
 * removes the VM's private dir.
 */
export class Vm implements Machine {
  readonly qmp = new QmpClient();
  readonly agent = new AgentClient();
  hello?: AgentHello;
  private exitInfo?: { exitCode?: number; signal?: string };
  private stderrText = '';
  /** Aborted when QEMU exits: ends connection retries on sockets a dead QEMU left behind. */
  private readonly exitSignal = new AbortController();
  private disposed = false;
  private readonly unregister: () => void;
  /** Set while we stop the vCPUs ourselves (the kill, a snapshot save): that STOP is expected. */
  private stopping = false;
  /** Why QEMU stopped the guest on its own, once it has. */
  fault?: VmFaultError;
  /** Set while a restore is being finished: a failure then is the saved state's. */
  private restoreStage?: string;

  private constructor(
    readonly spec: MachineSpec,
    readonly argv: string[],
    readonly dir: TempDir,
    readonly paths: VmPaths,
    readonly accel: Accel,
    private readonly proc: ResultPromise,
    readonly startedAt: number,
  ) {
    // On Ctrl-C, SIGTERM or a harness crash the VM is discarded: no orderly
    // quit, which a loaded machine may take seconds to answer while the
    // process has a hard deadline to exit by.
    this.unregister = onCleanup(async () => {
      await this.teardown(3000, true);
    });
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

  get kernel() {
    return this.spec.kernel;
  }

  get gdbSocket(): string | undefined {
    return this.paths.gdb;
  }

  static async launch(o: VmOptions): Promise<Vm> {
    const spec: MachineSpec = { ...o, role: o.role ?? 'test' };
    const accel = spec.accel ?? (await detectAccel()).accel;
    const qemu = await tool('qemu-system-x86_64');
    const setpriv = await tool('setpriv');
    // Opened before the VM's temp dir exists, so a missing state file leaves nothing behind.
    const state = await openSavedState(spec);
    // blklogwrites neither creates its log file nor cuts an old one short: start empty.
    if (spec.disk.writeLog) await writeFile(spec.disk.writeLog, '');
    const dir = await TempDir.create('vm');
    const paths: VmPaths = {
      qmp: dir.join('qmp.sock'),
      agent: dir.join('agent.sock'),
      console: dir.join('console.log'),
      pidfile: dir.join('qemu.pid'),
      ...(spec.gdb ? { gdb: dir.join('gdb.sock') } : {}),
    };
    const argv = [qemu, ...vmArgv(spec, paths, accel, o.name ?? `qcrash-${spec.role}`)];
    // A teardown that started during the dir's creation is removing it: QEMU
    // must not start there, and would outlive the teardown (a parent-death
    // signal stops it only once the harness is gone).
    if (shuttingDown()) {
      await state?.close();
      throw new InfraError('qcrash is stopping: no new VM');
    }
    const startedAt = performance.now();
    const proc = spawnQemu(setpriv, argv, state);
    // Registered (its constructor) in the turn QEMU starts, so any later teardown takes it down.
    const vm = new Vm(spec, argv, dir, paths, accel, proc, startedAt);
    // QEMU holds its own copy of the descriptor.
    await state?.close();
    try {
      await vm.connect(spec.bootTimeoutMs ?? (accel === 'kvm' ? 30_000 : 120_000), spec.waitAgent ?? true, spec.restoreFrom);
    } catch (e) {
      const err = await vm.launchError(e);
      // The launch error says what went wrong; a hard kill on the way out adds nothing to it.
      await vm.teardown();
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
    this.qmp.onEvent((e) => this.watch(e));
    const qmpAt = performance.now() - this.startedAt;
    // The agent's host side connects before the guest can write to the port
    // (its writes block until then), and before a restored guest resumes.
    await this.waitForSocket(this.paths.agent, deadline);
    await this.agent.connect(this.paths.agent, left(), signal);
    const agentAt = performance.now() - this.startedAt;
    if (restoreFrom) {
      this.restoreStage = 'loading the state';
      await finishRestore(this.qmp, restoreFrom, left());
      this.restoreStage = "waiting for the restored guest's agent";
    }
    const restoredAt = performance.now() - this.startedAt;
    if (!waitAgent) {
      this.restoreStage = undefined;
      return;
    }
    // A restored guest's agent said "ready" before the snapshot: ask it instead.
    const info = restoreFrom ? await this.agent.hello(left()) : await this.agent.waitReady(left());
    this.restoreStage = undefined;
    const bootMs = performance.now() - this.startedAt;
    this.hello = {
      ...info,
      bootMs,
      phases: { qmp: qmpAt, agentPort: agentAt, ...(restoreFrom ? { restored: restoredAt } : {}), ready: bootMs },
    };
  }

  /**
   * A disk error or a pause we did not ask for ends what runs in the guest at
   * once, with the cause, instead of leaving the workload to wait out its
   * step timeout on a frozen VM. A gdbstub stops the VM too (attach,
   * breakpoints): machines with one only watch for disk errors.
   */
  private watch(e: QmpEvent): void {
    if (this.fault || this.stopping) return;
    if (e.event === 'BLOCK_IO_ERROR') {
      const d = (e.data ?? {}) as { reason?: string; nospace?: boolean; action?: string; operation?: string };
      const where = this.spec.disk.path;
      this.fault = new VmFaultError(
        d.nospace
          ? `host disk full: QEMU could not ${d.operation ?? 'write'} ${where} (${d.reason ?? 'No space left on device'}) and paused the VM; free space under ${where.slice(0, where.lastIndexOf('/')) || '/'}`
          : `QEMU could not ${d.operation ?? 'write'} the test disk ${where}: ${d.reason ?? 'I/O error'} (action ${d.action ?? '?'})${writeLogErrorHint(this.spec.disk, d.reason)}`,
        e,
      );
    } else if (e.event === 'STOP' && !this.spec.gdb && this.hello) {
      this.fault = new VmFaultError('QEMU paused the VM on its own (a STOP event nobody asked for)', e);
    } else return;
    this.agent.close(this.fault);
  }

  private async waitForSocket(path: string, deadline: number): Promise<void> {
    while (performance.now() < deadline) {
      if (this.exitInfo) throw new InfraError(`QEMU exited (${this.exitDescription()}) before it opened ${path}`);
      if (
        await access(path).then(
          () => true,
          () => false,
        )
      )
        return;
      // Short polls: QEMU creates its sockets within milliseconds, and a
      // restored VM is ready in a few hundred.
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new InfraError(`QEMU did not create ${path} in time`);
  }

  private async launchError(cause: unknown): Promise<VmLaunchError> {
    // Give QEMU a moment to exit and print why.
    await this.waitExit(500);
    const message = `VM did not start${this.exitInfo ? ` (QEMU ${this.exitDescription()})` : ''}: ${cause instanceof Error ? cause.message : String(cause)}`;
    const restoreFrom = this.spec.restoreFrom;
    // QEMU reads the state from its first moment, so a bad file surfaces as
    // QEMU exiting with a load error on stderr, whatever the harness was waiting for.
    if (restoreFrom && (this.restoreStage !== undefined || restoreLoadFailure.test(this.stderrText))) {
      return new VmRestoreError(
        `${message} (restoring ${restoreFrom}${this.restoreStage ? `, ${this.restoreStage}` : ''})`,
        restoreFrom,
        this.argv,
        this.exitInfo?.exitCode,
        await this.consoleTail(),
        this.stderrText,
        cause,
      );
    }
    return new VmLaunchError(message, this.argv, this.exitInfo?.exitCode, await this.consoleTail(), this.stderrText, cause);
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
  async kill(timeoutMs = 10_000): Promise<ShutdownEvent> {
    if (!this.exitInfo && !this.qmp.closed) {
      this.stopping = true;
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

  /**
   * Clean power-off through the agent: sync, umount, then `reboot -f`,
   * which ends QEMU because it runs with -no-reboot. That works on every
   * kernel, with or without ACPI (a minimal kernel hangs in `poweroff -f`).
   * Returns the SHUTDOWN event.
   */
  async powerOff(timeoutMs = 60_000): Promise<ShutdownEvent> {
    const since = this.qmp.eventLog.length;
    const shutdown = this.qmp.waitEvent('SHUTDOWN', timeoutMs, since).catch(() => undefined);
    this.agent.send('poweroff', []);
    const ev = await shutdown;
    await this.waitExit(timeoutMs);
    return ev ?? this.qmp.eventLog.slice(since).find((e) => e.event === 'SHUTDOWN');
  }

  async saveState(file: string): Promise<void> {
    this.stopping = true;
    await saveVmState(this.qmp, file);
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
    await this.agent.transcript.save(`${prefix}agent.log`, 'text');
  }

  /**
   * The one teardown, whatever state the VM is in: QMP quit, then SIGTERM,
   * then SIGKILL, each only if QEMU still runs; then close the channels and
   * remove the private dir. Idempotent. Raises AbnormalShutdownError (after
   * the cleanup) when QEMU had to be terminated or killed.
   */
  async shutdown(opts: { stageTimeoutMs?: number } = {}): Promise<void> {
    const abnormal = await this.teardown(opts.stageTimeoutMs);
    if (abnormal) throw abnormal;
  }

  private teardownDone?: Promise<AbnormalShutdownError | undefined>;

  private teardown(stageTimeoutMs = 3000, interrupted = false): Promise<AbnormalShutdownError | undefined> {
    if (this.disposed) return this.teardownDone!;
    this.disposed = true;
    this.unregister();
    this.teardownDone = (async () => {
      let abnormal: AbnormalShutdownError | undefined;
      let quitFailure: unknown;
      try {
        if (interrupted && !this.exitInfo) {
          this.proc.kill('SIGKILL');
          await this.waitExit(5000);
          return undefined;
        }
        if (!this.exitInfo && !this.qmp.closed) await this.qmp.quit(stageTimeoutMs).catch((e: unknown) => (quitFailure = e));
        if (!(await this.waitExit(stageTimeoutMs))) {
          this.proc.kill('SIGTERM');
          let escalation: 'SIGTERM' | 'SIGKILL' = 'SIGTERM';
          if (!(await this.waitExit(stageTimeoutMs))) {
            escalation = 'SIGKILL';
            this.proc.kill('SIGKILL');
            await this.waitExit(5000);
          }
          abnormal = new AbnormalShutdownError(
            this.pid,
            escalation,
            this.stderrText,
            quitFailure ??
              (this.qmp.closed ? (this.qmp.disconnectCause ?? new Error('the QMP connection was closed')) : undefined),
          );
        }
      } finally {
        this.qmp.close();
        this.agent.close();
        await this.dir.remove();
      }
      return abnormal;
    })();
    return this.teardownDone;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}

export type { QmpEvent };
