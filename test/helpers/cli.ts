import { execa } from 'execa';
import { qcrashBin } from './env.ts';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the qcrash CLI as a user does, in a child process. */
export async function qcrash(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  const r = await execa(process.execPath, [qcrashBin, ...args], {
    reject: false,
    env: { ...process.env, ...opts.env },
    timeout: opts.timeoutMs ?? 600_000,
    stdin: 'ignore',
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
