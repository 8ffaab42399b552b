import type { Finding, RecoveryModeName } from '../findings/finding.ts';

/**
 * Kernel messages that mean the kernel itself saw something wrong. Each
 * becomes a `kernel` finding with the lines that follow it (its trace).
 */
const patterns: Array<{ code: string; re: RegExp }> = [
  { code: 'kernel-panic', re: /Kernel panic - not syncing/ },
  { code: 'oops', re: /\bOops\b|general protection fault|BUG: unable to handle/ },
  { code: 'bug', re: /\bBUG: |kernel BUG at/ },
  { code: 'warning', re: /\bWARNING: (CPU|at)\b/ },
  { code: 'ext4-error', re: /EXT4-fs error/ },
  { code: 'ext4-warning', re: /EXT4-fs warning/ },
  { code: 'jbd2-error', re: /JBD2: .*(error|Error|abort)|Aborting journal/ },
  { code: 'hung-task', re: /INFO: task .* blocked for more than/ },
  { code: 'lockdep', re: /WARNING: possible (circular|recursive) locking|inconsistent lock state/ },
  { code: 'soft-lockup', re: /soft lockup|hard LOCKUP|rcu_sched self-detected stall|rcu: INFO: rcu_\w+ (self-)?detected stall/ },
];

/** The end of a trace: "---[ end trace ... ]---", or the next unrelated line after the Call Trace block. */
const endOfTrace = /---\[ end (trace|Kernel panic)/;

export function scanConsole(log: string, opts: { boot?: string; recovery?: RecoveryModeName } = {}): Finding[] {
  const lines = log.replace(/\r/g, '').split('\n');
  const findings: Finding[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    const hit = patterns.find((p) => p.re.test(line));
    if (!hit) {
      i++;
      continue;
    }
    const trace = [line];
    let j = i + 1;
    // Collect the trace: a bounded number of following lines, stopping at its end marker.
    // Only these print a stack trace after their first line; an ext4 or
    // jbd2 error is a single line.
    const hasTrace = !['ext4-error', 'ext4-warning', 'jbd2-error'].includes(hit.code);
    if (hasTrace) {
      for (; j < lines.length && j < i + 80; j++) {
        if (patterns.some((p) => p.re.test(lines[j]!))) break;
        trace.push(lines[j]!);
        if (endOfTrace.test(lines[j]!)) {
          j++;
          break;
        }
      }
    }
    findings.push({
      class: 'kernel',
      source: 'console',
      code: hit.code,
      name: hit.code,
      message: `${opts.boot ? `${opts.boot}: ` : ''}${stripTimestamp(line).slice(0, 200)}`,
      ...(opts.recovery ? { recovery: opts.recovery } : {}),
      ...(trace.length > 1 ? { detail: trace.join('\n') } : {}),
    });
    i = j > i + 1 ? j : i + 1;
  }
  return findings;
}

function stripTimestamp(l: string): string {
  return l.replace(/^\[\s*\d+\.\d+\]\s*/, '');
}
