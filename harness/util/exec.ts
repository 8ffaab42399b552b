import { execa, type Options } from 'execa';
import { CommandError } from './errors.ts';

/** One flat result for success and failure, as execa itself does. */
export interface RunResult {
  argv: string[];
  exitCode: number | undefined;
  signal: string | undefined;
  stdout: string;
  stderr: string;
  failed: boolean;
  durationMs: number;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string | Uint8Array;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Exit codes that are not failures (e2fsck uses a bitmask where 1 and 4 are answers). */
  okExitCodes?: readonly number[];
  maxBuffer?: number;
}

/**
 * Run a program with an argument array (never a shell string). Never throws
 * for a non-zero exit: callers that need success use `runOk`.
 */
export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = performance.now();
  const options: Options = {
    reject: false,
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: true,
    timeout: opts.timeoutMs,
    cancelSignal: opts.signal,
    maxBuffer: opts.maxBuffer ?? 256 * 1024 * 1024,
    stripFinalNewline: false,
    encoding: 'utf8',
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' }),
  };
  const r = await execa(file, [...args], options);
  const ok = opts.okExitCodes ?? [0];
  const exitCode = r.exitCode;
  return {
    argv: [file, ...args],
    exitCode,
    signal: r.signal ?? undefined,
    stdout: String(r.stdout ?? ''),
    stderr: String(r.stderr ?? ''),
    failed: exitCode === undefined || !ok.includes(exitCode),
    durationMs: performance.now() - started,
  };
}

export async function runOk(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(file, args, opts);
  if (r.failed) {
    const tail = (r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n');
    throw new CommandError(
      `${file} ${args.join(' ')} failed (${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`})${tail ? `:\n${tail}` : ''}`,
      r.argv,
      r.exitCode,
      r.stdout,
      r.stderr,
    );
  }
  return r;
}
