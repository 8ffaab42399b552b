import { InfraError } from '../../util/errors.ts';

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

/**
 * A saved VM state that could not be restored: QEMU refused to load it
 * ("load of migration failed"), the load did not complete, the file could
 * not be opened, or the restored guest's agent never answered. The state is
 * what is wrong, not the kernel: the caller may discard it and boot instead.
 */
export class VmRestoreError extends VmLaunchError {
  constructor(
    message: string,
    readonly stateFile: string,
    argv: string[],
    qemuExitCode: number | undefined,
    consoleTail: string,
    stderr: string,
    cause?: unknown,
  ) {
    super(message, argv, qemuExitCode, consoleTail, stderr, cause);
  }
}

/**
 * QEMU did not end when asked (QMP quit) and had to be terminated or killed,
 * as qemu.machine's AbnormalShutdown: the teardown still completed (no
 * process or temp dir is left), but whatever the caller was doing with the
 * VM cannot be trusted. Keeps why the orderly path failed.
 */
export class AbnormalShutdownError extends InfraError {
  constructor(
    readonly pid: number | undefined,
    readonly escalation: 'SIGTERM' | 'SIGKILL',
    readonly stderr: string,
    cause?: unknown,
  ) {
    super(
      `QEMU (pid ${pid}) did not exit on QMP quit and was stopped with ${escalation}${cause instanceof Error ? `: ${cause.message}` : ''}${stderr ? `\nqemu stderr: ${stderr.trim().slice(-400)}` : ''}`,
      cause === undefined ? undefined : { cause },
    );
  }
}

/**
 * QEMU stopped the guest on its own: a write to the disk failed (ENOSPC on
 * the host: QEMU's default werror=enospc pauses the VM) or the VM paused
 * for another reason. Nothing the workload waits for will come; the case
 * ends at once with this as its cause.
 */
export class VmFaultError extends InfraError {
  constructor(
    message: string,
    readonly event: unknown,
  ) {
    super(message);
  }
}
