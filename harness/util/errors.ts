/**
 * One root error class; children say which exit code a failure maps to and
 * keep what was sent and received, so a report can show the whole exchange.
 *
 * Exit codes (qcrash run/check/validate): 0 pass, 1 a case failed,
 * 2 usage or configuration error, 3 infrastructure error.
 * Under `bisect-step` a configuration or infrastructure error becomes 125 (skip).
 */
export const ExitCode = {
  pass: 0,
  failed: 1,
  usage: 2,
  infrastructure: 3,
  bisectSkip: 125,
} as const;

export class QcrashError extends Error {
  /** The exit code the CLI uses when this error ends a command. */
  readonly exitCode: number = ExitCode.infrastructure;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad input from the user: a scenario, a flag, a patch that does not apply. Exit 2. */
export class ConfigError extends QcrashError {
  override readonly exitCode: number = ExitCode.usage;
  constructor(
    message: string,
    readonly where?: { file?: string; line?: number; column?: number },
    options?: { cause?: unknown },
  ) {
    super(where?.file ? `${formatWhere(where)}: ${message}` : message, options);
  }
}

/** Something the harness needed did not work: a tool is missing, a VM did not boot. Exit 3. */
export class InfraError extends QcrashError {
  override readonly exitCode: number = ExitCode.infrastructure;
}

/** A required host program is absent; names the Debian package that provides it. */
export class MissingToolError extends InfraError {
  constructor(
    readonly program: string,
    readonly debianPackage: string,
  ) {
    super(`${program} not found. Install it with: apt-get install ${debianPackage}  (or run: qcrash doctor --install)`);
  }
}

/**
 * A child process failed; keeps argv, the child's exit code and both output
 * streams. `exitCode` stays the CLI's exit code, as for every QcrashError.
 */
export class CommandError extends InfraError {
  constructor(
    message: string,
    readonly argv: readonly string[],
    /** The child's exit status; undefined when a signal ended it. */
    readonly childExitCode: number | undefined,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

export function formatWhere(where: { file?: string; line?: number; column?: number }): string {
  let s = where.file ?? '<input>';
  if (where.line !== undefined) s += `:${where.line}`;
  if (where.column !== undefined) s += `:${where.column}`;
  return s;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * An error as a case records it: its message and its kind (the class name).
 * `await using` wraps an error thrown while disposing after another error
 * in a SuppressedError; both halves are kept, the body's error first.
 */
export function describeError(e: unknown): { message: string; kind: string } {
  if (typeof SuppressedError !== 'undefined' && e instanceof SuppressedError) {
    const body = describeError(e.suppressed);
    const teardown = describeError(e.error);
    return { message: `${body.message}\n(and then, tearing down: ${teardown.message})`, kind: body.kind };
  }
  if (e instanceof Error) return { message: e.message, kind: e.name || e.constructor.name };
  return { message: String(e), kind: 'unknown' };
}
