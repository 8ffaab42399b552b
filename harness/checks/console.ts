import type { Finding, RecoveryMode } from '../findings/finding.ts';

/**
 * Kernel messages that mean the kernel itself saw something wrong. Each
 * becomes a `kernel` finding with the lines that follow it (its trace) and
 * a title in syzkaller's style (pkg/report): the kind plus the first
 * meaningful frame, addresses and offsets stripped, so two WARNINGs in
 * different functions are two bugs and the same WARNING on two runs is one.
 * The order matters: the more specific kinds come first.
 */
const patterns: Array<{ code: string; re: RegExp; trace: boolean }> = [
  { code: 'kernel-panic', re: /Kernel panic - not syncing/, trace: true },
  {
    code: 'soft-lockup',
    re: /soft lockup|hard LOCKUP|rcu_sched self-detected stall|rcu: INFO: rcu_\w+ (self-)?detected stall/,
    trace: true,
  },
  { code: 'lockdep', re: /WARNING: possible (circular|recursive) locking|inconsistent lock state/, trace: true },
  { code: 'oops', re: /\bOops\b|general protection fault|BUG: unable to handle/, trace: true },
  { code: 'bug', re: /\bBUG: |kernel BUG at/, trace: true },
  { code: 'warning', re: /\bWARNING: (CPU|at)\b/, trace: true },
  // Only these three are single lines: ext4 and jbd2 print no stack trace.
  { code: 'ext4-error', re: /EXT4-fs error/, trace: false },
  { code: 'ext4-warning', re: /EXT4-fs warning/, trace: false },
  { code: 'jbd2-error', re: /JBD2: .*(error|Error|abort)|Aborting journal/, trace: false },
  { code: 'hung-task', re: /INFO: task .* blocked for more than/, trace: true },
];

/** The end of a trace: "---[ end trace ... ]---". */
const endOfTrace = /---\[ end (trace|Kernel panic)/;
/** An Oops line right after a BUG line is the same report, not a second one. */
const continuation = /^\s*(\[\s*\d+\.\d+\]\s*)?(Oops:|#PF:|PGD |RIP:|Code:|CPU: \d+ PID:)/;

/**
 * Frames that say how the kernel got to the report, not where the bug is:
 * the reporting machinery, the scheduler a hung task sleeps in, syscall
 * entry and thread start. The first frame not in this list names the bug.
 */
const boringFrame = new RegExp(
  '^(' +
    [
      'dump_stack(_lvl)?',
      '__warn',
      'warn_slowpath_fmt',
      'report_bug',
      'handle_bug',
      'exc_invalid_op',
      'asm_exc_invalid_op',
      'panic',
      '__die(_body)?',
      'die',
      'oops_end',
      'page_fault_oops',
      'do_user_addr_fault',
      'exc_page_fault',
      'asm_exc_page_fault',
      'kernelmode_fixup_or_oops',
      '__bad_area_nosemaphore',
      'no_context',
      'exc_general_protection',
      'asm_exc_general_protection',
      '__schedule',
      'schedule',
      'schedule_timeout',
      'schedule_preempt_disabled',
      'io_schedule(_timeout)?',
      'bit_wait(_io)?',
      '__wait_on_bit(_lock)?',
      'out_of_line_wait_on_bit(_lock)?',
      'wait_for_completion(_\\w+)?',
      'rwsem_down_\\w+',
      'down_(read|write)(_\\w+)?',
      'mutex_lock(_\\w+)?',
      '__mutex_lock(_\\w+)?',
      'do_syscall_64',
      'entry_SYSCALL_64(_after_hwframe)?',
      '__x64_sys_\\w+',
      '__do_sys_\\w+',
      'ret_from_fork',
      'kthread',
      'worker_thread',
      'process_one_work',
      'sysvec_\\w+',
      'asm_sysvec_\\w+',
      'irq_exit_rcu',
      '__irq_exit_rcu',
      'watchdog_timer_fn',
      '__hrtimer_run_queues',
      'hrtimer_interrupt',
      'lock_acquire',
      '__lock_acquire',
      'check_noncircular',
      'print_circular_bug',
      'validate_chain',
    ].join('|') +
    ')$',
);

/** "ext4_ext_migrate+0x1a/0x200 [ext4]" -> "ext4_ext_migrate". */
function frameName(s: string): string | undefined {
  return /([A-Za-z_][\w.]*)\+0x[0-9a-f]+\/0x[0-9a-f]+/.exec(s)?.[1];
}

/** The first meaningful frame: the faulting RIP when it is meaningful, else the first reliable call-trace frame. */
export function firstFrame(trace: readonly string[], preferRip = true): string | undefined {
  if (preferRip) {
    const rip = trace.map((l) => /RIP: [0-9a-f]{4}:(\S+)/.exec(l)?.[1]).find(Boolean);
    const name = rip ? frameName(rip) : undefined;
    if (name && !boringFrame.test(name)) return name;
  }
  for (const l of trace) {
    const line = stripTimestamp(l).trim();
    // "? foo+0x1/0x2" frames are stack garbage the unwinder was not sure of.
    if (line.startsWith('?') || line.startsWith('RIP:')) continue;
    const name = /^([A-Za-z_][\w.]*)\+0x[0-9a-f]+\/0x[0-9a-f]+/.exec(line)?.[1];
    if (name && !boringFrame.test(name)) return name;
  }
  return undefined;
}

/** Numbers, addresses and device names vary between runs of the same bug. */
function normalize(s: string): string {
  return s
    .replace(/0x[0-9a-fA-F]+/g, 'ADDR')
    .replace(/\b[0-9a-fA-F]{12,16}\b/g, 'ADDR')
    .replace(/-?\b\d+\b/g, 'N')
    .replace(/\s+/g, ' ')
    .trim();
}

/** A syzkaller-style title for one report: its kind and where it happened. */
export function consoleTitle(code: string, line: string, trace: readonly string[]): string {
  const text = stripTimestamp(line).trim();
  const inFrame = (kind: string, preferRip = true) => {
    const f = firstFrame(trace, preferRip);
    return f ? `${kind} in ${f}` : kind;
  };
  switch (code) {
    case 'warning': {
      // "WARNING: CPU: 0 PID: 1 at fs/ext4/migrate.c:123 ext4_ext_migrate+0x1a/0x200 [ext4]"
      const fn = frameName(text);
      return fn && !boringFrame.test(fn) ? `WARNING in ${fn}` : inFrame('WARNING');
    }
    case 'bug':
      if (/kernel BUG at/.test(text)) return inFrame('kernel BUG');
      return inFrame(`BUG: ${normalize(text.replace(/^.*?BUG: /, '').replace(/,? (address|at):? .*$/, ''))}`);
    case 'oops':
      if (/general protection fault/.test(text)) return inFrame('general protection fault');
      return inFrame(normalize(text.replace(/,? address: .*$/, '').replace(/ for address.*$/, '')));
    case 'kernel-panic':
      return `kernel panic: ${normalize(text.replace(/^.*Kernel panic - not syncing:\s*/, ''))}`;
    case 'soft-lockup':
      return inFrame(
        /hard LOCKUP/.test(text) ? 'BUG: hard lockup' : /stall/.test(text) ? 'INFO: rcu detected stall' : 'BUG: soft lockup',
      );
    case 'lockdep':
      return inFrame(/inconsistent lock state/.test(text) ? 'inconsistent lock state' : 'possible deadlock', false);
    case 'hung-task':
      return inFrame('INFO: task hung', false);
    case 'ext4-error':
    case 'ext4-warning': {
      // "EXT4-fs error (device vda): ext4_lookup:1855: inode #2: comm ls: deleted inode referenced: 13"
      const m = /EXT4-fs (error|warning) \([^)]*\): ([\w.]+):\d+: (.*)$/.exec(text);
      if (!m) return normalize(text.replace(/ \(device [^)]*\)/, ''));
      const msg = m[3]!
        .replace(/^inode #\d+: /, '')
        .replace(/^block \d+: /, '')
        .replace(/^comm [^:]*: /, '');
      return `EXT4-fs ${m[1]} in ${m[2]}: ${normalize(msg)}`;
    }
    case 'jbd2-error':
      return normalize(text.replace(/\b(vd[a-z]|sd[a-z]|loop\d+)(-\d+)?\b/g, 'DEV'));
    default:
      return normalize(text);
  }
}

export function scanConsole(log: string, opts: { boot?: string; recovery?: RecoveryMode } = {}): Finding[] {
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
    if (hit.trace) {
      // Collect the trace: a bounded number of following lines, up to its
      // end marker or the next report.
      for (; j < lines.length && j < i + 80; j++) {
        const l = lines[j]!;
        if (patterns.some((p) => p.re.test(l)) && !continuation.test(l)) break;
        trace.push(l);
        if (endOfTrace.test(l)) {
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
      title: consoleTitle(hit.code, line, trace.slice(1)),
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
