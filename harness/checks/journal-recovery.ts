import type { Finding, RecoveryMode } from '../findings/finding.ts';
import type { E2fsckRun } from '../image/e2fsck.ts';

/**
 * e2fsck's journal replay that failed, as a finding. When
 * jbd2_journal_recover() returns an error that is neither a checksum error
 * nor EFSCORRUPTED, e2fsck prints "<error> while recovering journal of
 * <device>", resets the journal (its committed transactions are gone) and
 * goes on: `-E journal_only` still exits 0. The content and e2fsck oracles
 * then see only the consequences (files missing, bitmaps that do not match
 * their checksums); this says why. Seen with fast commits (e2fsprogs
 * 1.47.0): "Invalid argument" for a stale fast commit whose HEAD names the
 * last committed transaction (known-bugs/e2fsck-fc-stale-head-1k), "Bad
 * address" for a fast commit that adds a range to a block-mapped inode
 * (known-bugs/fc-blockmapped-fsync-1k).
 */
export function journalRecoveryFindings(runs: readonly E2fsckRun[], recovery: RecoveryMode): Finding[] {
  const out: Finding[] = [];
  for (const r of runs) {
    if (r.mode !== 'journal-only') continue;
    const line = /^.*\bwhile recovering journal\b.*$/m.exec(r.text)?.[0];
    if (!line) continue;
    const why = /^(?:\S*e2fsck: )?(.*?) while recovering journal/.exec(line.trim())?.[1] ?? '';
    const cause = /^Error ".*" encountered in function \S+ at line \d+$/m.exec(r.text)?.[0];
    out.push({
      class: 'corruption',
      source: 'e2fsck',
      code: 'journal-recovery-failed',
      name: 'journal-recovery-failed',
      message: `e2fsck's journal replay failed (${why || 'error'}): the journal was reset, its committed transactions not replayed`,
      recovery,
      detail: [cause, line.trim()].filter(Boolean).join('\n'),
    });
  }
  return out;
}
