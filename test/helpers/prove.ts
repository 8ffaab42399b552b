import { execFileSync } from 'node:child_process';

/** Perl's prove (Test::Harness) on a TAP file: its exit code and verbose output. */
export function prove(file: string): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync('prove', ['-v', '--exec', 'cat', file], { encoding: 'utf8' }) };
  } catch (e) {
    const err = e as { status: number; stdout: string };
    return { code: err.status, out: err.stdout };
  }
}
