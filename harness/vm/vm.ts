import { execa, type ResultPromise } from 'execa';
import { readFile, access, copyFile, writeFile } from 'node:fs/promises';
import type { KernelInfo } from '../kernel/kernel.ts';
import { detectAccel, type Accel } from '../doctor/accel.ts';
import { InfraError } from '../util/errors.ts';
import { onCleanup } from '../util/cleanup.ts';
import { TempDir } from '../util/tempdir.ts';
import { tool } from '../util/tools.ts';
import { QmpClient, type QmpEvent } from './qmp-client.ts';
import { AgentClient } from './agent.ts';
import { qemuArgv, type VmPaths } from './argv.ts';
import { restoreVmState, snapshotSocket } from './snapshot.ts';

/** QEMU did not come up: keeps argv, exit code and the console's last lines. */
export class VmLaunchError extends InfraError {
  constructor(
    message: string,
    readonly argv: string[],
    readonly qemuExitCode: number | undefined,
    readonly consoleTail: string,
    readonly stderr: string,
  ) {
    super(`${message}${stderr ? `\nqemu stderr: ${stderr.trim().slice(-600)}` : ''}${consoleTail ? `\nconsole tail:\n${consoleTail}` : ''}`);
  }
}

export interface VmOptions {
  kernel: KernelInfo;
  initrd: string;
  disk: { path: string; format: 'qcow2' | 'raw' };
  name?: string;
  memoryMb?: number;
  append?: string[];
  /** Expose the gdbstub on a unix socket in the VM's private dir. */
  gdb?: boolean;
  /** Restore this saved VM state (vm/snapshot.ts) instead of booting. */
  restoreFrom?: string;
  /** Start with vCPUs stopped (-S); the caller resumes with QMP `cont`. */
  startStopped?: boolean;
  /** Wait for the guest agent's hello (default true). */
  waitAgent?: boolean;
  bootTimeoutMs?: number;
  accel?: Accel;
}

export interface AgentHello {
  release: string;
  uptime: number;
  /** Host milliseconds from QEMU start to the agent's reply. */
  bootMs: number;
}

/**
 * One QEMU VM. Launch builds argv, starts QEMU (with a parent-death signal so
 * a SIGKILLed harness takes it down), connects QMP and the agent. Disposal
 * always runs the same teardown: quit, then SIGTERM, then SIGKILL, then
 * remove the private dir.
 */
export class Vm implements AsyncDisposable {
  readonly qmp = new QmpClient();
  readonly agent = new AgentClient();
  hello?: AgentHello;
  private exitInfo?: { exitCode?: number; signal?: string };
  private disposed = false;
  private readonly unregister: () => void;

  private constructor(
    readonly argv: string[],
    readonly dir: TempDir,
    readonly paths: VmPaths,
    readonly accel: Accel,
    private readonly proc: ResultPromise,
    readonly startedAt: number,
  ) {
    this.unregister = onCleanup(() => this.shutdown());
    proc.then(
      (r) => (this.exitInfo = { exitCode: r.exitCode, signal: r.signal }),
      (e: { exitCode?: number; signal?: string }) => (this.exitInfo = { exitCode: e.exitCode, signal: e.signal }),
    );
  }

  static async launch(o: VmOptions): Promise<Vm> {
    const accel = o.accel ?? (await detectAccel()).accel;
    const dir = await TempDir.create('vm');
    const paths: VmPaths = {
      qmp: dir.join('qmp.sock'),
      agent: dir.join('agent.sock'),
      console: dir.join('console.log'),
      pidfile: dir.join('qemu.pid'),
      ...(o.gdb ? { gdb: dir.join('gdb.sock') } : {}),
    };
    const argv = qemuArgv({
      kernel: o.kernel,
      initrd: o.initrd,
      disk: o.disk,
      paths,
      accel,
      memoryMb: o.memoryMb ?? 256,
      name: o.name ?? 'qcrash',
      ...(o.append ? { append: o.append } : {}),
      ...(o.restoreFrom ? { incoming: `unix:${snapshotSocket(dir.path)}` } : {}),
      ...(o.startStopped ? { startStopped: true } : {}),
    });
    const qemu = await tool('qemu-system-x86_64');
    const setpriv = await tool('setpriv');
    const full = [qemu, ...argv];
    const startedAt = performance.now();
    const proc = execa(setpriv, ['--pdeathsig', 'KILL', '--', ...full], {
      reject: false,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      encoding: 'utf8',
      cleanup: true,
    });
    const vm = new Vm(full, dir, paths, accel, proc, startedAt);
    try {
      await vm.connect(o.bootTimeoutMs ?? (accel === 'kvm' ? 30_000 : 90_000), o.waitAgent ?? true, o.restoreFrom);
    } catch (e) {
      const err = await vm.launchError(e);
      await vm.shutdown();
      throw err;
    }
    return vm;
  }

  private async connect(timeoutMs: number, waitAgent: boolean, restoreFrom?: string): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    await this.waitForSocket(this.paths.qmp, deadline);
    await this.qmp.connect(this.paths.qmp);
    // The agent's host side is connected before a restored guest resumes, so
    // the guest never sees its port without a peer.
    await this.waitForSocket(this.paths.agent, deadline);
    await this.agent.connect(this.paths.agent);
    if (restoreFrom) await restoreVmState(this.qmp, snapshotSocket(this.dir.path), restoreFrom, timeoutMs);
    if (!waitAgent) return;
    const left = Math.max(1000, deadline - performance.now());
    const r = await this.agent.call('hello', [], left);
    const [release = '', uptime = '0'] = r.output.trim().split('\n');
    this.hello = { release, uptime: Number(uptime.split(' ')[0]), bootMs: performance.now() - this.startedAt };
  }

  private async waitForSocket(path: string, deadline: number): Promise<void> {
    while (performance.now() < deadline) {
      if (this.exitInfo) throw new InfraError(`QEMU exited (code ${this.exitInfo.exitCode ?? this.exitInfo.signal}) before it opened ${path}`);
      if (await access(path).then(() => true, () => false)) return;
      // Short polls: QEMU creates its sockets within milliseconds, and a
      // restored VM is ready in a few hundred.
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new InfraError(`QEMU did not create ${path} in time`);
  }

  private async launchError(cause: unknown): Promise<VmLaunchError> {
    // Give QEMU a moment to print why it died.
    await Promise.race([this.proc, new Promise((r) => setTimeout(r, 300))]);
    const stderr = this.exitInfo ? String((await this.proc).stderr ?? '') : '';
    return new VmLaunchError(
      `VM did not start: ${cause instanceof Error ? cause.message : String(cause)}`,
      this.argv,
      this.exitInfo?.exitCode,
      await this.consoleTail(),
      stderr,
    );
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  async consoleText(): Promise<string> {
    return readFile(this.paths.console, 'utf8').catch(() => '');
  }

  async consoleTail(lines = 30): Promise<string> {
    return (await this.consoleText()).split('\n').slice(-lines).join('\n');
  }

  /**
   * The crash: freeze the vCPUs (`stop`) so nothing more reaches the disk,
   * then `quit`. Returns the SHUTDOWN event QEMU sent.
   */
  async kill(): Promise<QmpEvent | undefined> {
    const since = this.qmp.eventLog.length;
    await this.qmp.execute('stop');
    const shutdown = this.qmp.waitEvent('SHUTDOWN', 10_000, since).catch(() => undefined);
    await this.qmp.quit();
    const ev = await shutdown;
    await this.waitExit(10_000);
    return ev;
  }

  /** Clean power-off through the agent (sync, umount, poweroff/reboot -f). */
  async powerOff(timeoutMs = 60_000): Promise<QmpEvent | undefined> {
    const since = this.qmp.eventLog.length;
    const shutdown = this.qmp.waitEvent('SHUTDOWN', timeoutMs, since).catch(() => undefined);
    this.agent.send('poweroff', [this.hello && !this.acpiLess ? 'acpi' : 'reboot']);
    const ev = await shutdown;
    await this.waitExit(timeoutMs);
    return ev;
  }

  /** Set by callers booting kernels without ACPI (minimal configs): poweroff uses reboot -f. */
  acpiLess = false;

  async waitExit(timeoutMs: number): Promise<boolean> {
    if (this.exitInfo) return true;
    await Promise.race([this.proc, new Promise((r) => setTimeout(r, timeoutMs))]);
    return this.exitInfo !== undefined;
  }

  /** Copy the console log and transcripts into a case folder. */
  async saveArtefacts(prefix: string): Promise<void> {
    await copyFile(this.paths.console, `${prefix}console.log`).catch(() => writeFile(`${prefix}console.log`, ''));
    await writeFile(`${prefix}qmp.jsonl`, this.qmp.transcriptJsonl());
    await writeFile(`${prefix}agent.log`, this.agent.transcript.join('\n') + '\n');
  }

  /** Always the same teardown, whatever state the VM is in. Idempotent. */
  async shutdown(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.unregister();
    try {
      if (!this.exitInfo && !this.qmp.closed) await this.qmp.quit(3000).catch(() => {});
      if (!(await this.waitExit(3000))) {
        this.proc.kill('SIGTERM');
        if (!(await this.waitExit(3000))) {
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
