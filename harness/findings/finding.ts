/**
 * A Finding is one thing an oracle saw wrong (or tolerably odd) in a crash
 * image or a log. Oracles produce them from images and logs only, never from
 * a live VM, so a finding means the same whatever produced the image.
 */
/**
 * `api`: a system call's answer that contradicts what the kernel did, with
 * the data intact (FS_IOC_SETFLAGS returned 0 and the file is still
 * block-mapped: `ioctl-lied`).
 */
export const findingClasses = ['leak', 'corruption', 'data', 'kernel', 'api'] as const;
export type FindingClass = (typeof findingClasses)[number];

/** Which oracle produced the finding. */
/** `workload`: what the guest reported for a step (a step that failed, an ioctl return the ABI does not allow). */
type FindingSource = 'e2fsck' | 'repair' | 'content' | 'durability' | 'console' | 'workload';

export type RecoveryMode = 'e2fsck' | 'kernel';

export interface Finding {
  class: FindingClass;
  source: FindingSource;
  /** e2fsck problem code ("0x010004"), or an oracle's code ("content-mismatch", "oops"). */
  code: string;
  /** Short stable name: e2fsck's PR_* name or the oracle code. */
  name: string;
  /** One line a human reads. */
  message: string;
  /**
   * For kernel console findings: the kind and the first meaningful frame,
   * as syzkaller titles a crash ("WARNING in ext4_ext_migrate"); part of the
   * finding's signature, so different bugs of one kind stay apart.
   */
  title?: string;
  /** Recovery mode after which it was seen (absent for no-recovery oracles such as the console of the workload boot). */
  recovery?: RecoveryMode;
  ino?: number;
  block?: number;
  group?: number;
  path?: string;
  /** Byte offset in the file at `path` where the content oracle saw the first wrong sector. */
  offset?: number;
  /** Extra text: a stack trace, e2fsck's text for the problem, expected vs actual hashes. */
  detail?: string;
}

/**
 * Findings a known bug explains, allowed only where its `scenarios/known-bugs/`
 * entry reproduces it: on its kernel lines (a bug of one line must not hide
 * the same finding on another, where it would be new) and after the
 * recoveries it shows under (an e2fsck bug must not hide a loss the kernel's
 * own recovery makes).
 */
interface KnownBugAllowance {
  /** The `scenarios/known-bugs/` entry (file name without `.yaml`) that explains them. */
  entry: string;
  codes: string[];
  /** Kernel lines ("6.12"), each in the entry's `confirmed-on:`; absent: every line (an e2fsprogs bug). */
  lines?: string[];
  /** Recoveries after which the findings are allowed; absent: any. */
  recovery?: RecoveryMode[];
}

/** What a scenario tolerates. The default allows only `leak`. */
export interface Allowance {
  classes: FindingClass[];
  /** e2fsck problem codes or oracle codes allowed regardless of class. */
  codes: string[];
  /** Known bugs' findings as the scenario declares them, for every line. */
  knownBugs?: KnownBugAllowance[];
  /** Those of `knownBugs` that hold on this run's kernel line (`allowanceOnLine`): only these allow a finding. */
  knownBugsHere?: KnownBugAllowance[];
}

export const defaultAllowance: Allowance = { classes: ['leak'], codes: [] };

/** The allowance on one kernel line: the known bugs whose entry reproduces on that line. */
export function allowanceOnLine(allow: Allowance, line: string | undefined): Allowance {
  const here = (allow.knownBugs ?? []).filter((k) => !k.lines || (line !== undefined && k.lines.includes(line)));
  return { ...allow, knownBugsHere: here };
}

export function isAllowed(f: Finding, allow: Allowance): boolean {
  return allowedByScenario(f, allow) || knownBugEntry(f, allow) !== undefined;
}

/**
 * The known-bugs entry that lets `f` pass on this line, when the scenario's
 * own classes and codes do not already: the reports count those under it.
 */
export function knownBugAllowing(f: Finding, allow: Allowance): string | undefined {
  return allowedByScenario(f, allow) ? undefined : knownBugEntry(f, allow);
}

function allowedByScenario(f: Finding, allow: Allowance): boolean {
  return allow.classes.includes(f.class) || allow.codes.includes(f.code) || allow.codes.includes(f.name);
}

function knownBugEntry(f: Finding, allow: Allowance): string | undefined {
  return (allow.knownBugsHere ?? []).find(
    (k) =>
      (k.codes.includes(f.code) || k.codes.includes(f.name)) &&
      (!k.recovery || (f.recovery !== undefined && k.recovery.includes(f.recovery))),
  )?.entry;
}
