import type { RecoveryMode } from '../findings/finding.ts';
import type { E2fsckRun } from '../image/e2fsck.ts';

/**
 * A crash image after one recovery mode: what the oracles check. Recoveries
 * only recover and report what happened on the way (the journal replay's
 * e2fsck run, the kernel's console and what mount said); turning that into
 * findings is the oracles' job (harness/checks/oracle.ts), which take it as
 * their own ImageUnderCheck: this type has every field of that one, and
 * neither module imports the other.
 */
export interface RecoveredImage {
  mode: RecoveryMode;
  /** The recovered image: a work copy; the crash image itself is never modified. */
  image: string;
  /** e2fsck runs made by the recovery itself (the user-space journal replay). */
  runs: E2fsckRun[];
  /** Kernel recovery: the recovery boot's console. */
  console?: string;
  /** Kernel recovery: what mount and umount said in the guest. */
  mount?: { exitCode: number; output: string };
  umount?: { exitCode: number; output: string };
  /** Kernel recovery: whether its machine was restored from the saved state, and whether the guest dropped its buffers for the disk before the mount. */
  machine?: { restored: boolean; flushed: boolean };
  durationMs: number;
  /** The identity of the recovered image's bytes (equal keys, equal bytes) and the state it is: a write-log state checked in place. */
  identity?: { key: string; state: string };
  /** Where durationMs went: waiting for a machine slot, starting the machine, the mount and umount (kernel recovery). */
  phases?: { queuedMs?: number; machineMs?: number; mountMs?: number };
}
