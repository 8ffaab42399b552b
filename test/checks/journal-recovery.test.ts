import t from 'tap';
import { journalRecoveryFindings } from '../../harness/checks/journal-recovery.ts';
import type { E2fsckRun } from '../../harness/image/e2fsck.ts';

// e2fsck 1.47.0 prints why its journal replay failed and still exits 0 with
// -E journal_only: the texts are from real runs (known-bugs/e2fsck-fc-stale-head-1k
// flush-7, fc-blockmapped-fsync-1k flush-6).

const run = (mode: E2fsckRun['mode'], text: string): E2fsckRun =>
  ({ mode, argv: [], text, xml: '', problems: [], exit: { code: 0 } }) as unknown as E2fsckRun;

t.test('a failed replay is a finding with its errno', async (t) => {
  const stale = run(
    'journal-only',
    'work-0.img: recovering journal\n\ne2fsck 1.47.0 (5-Feb-2023)\n/usr/sbin/e2fsck: Invalid argument while recovering journal of work-0.img\n',
  );
  const [f, ...rest] = journalRecoveryFindings([stale], 'e2fsck');
  t.equal(rest.length, 0);
  t.equal(f?.code, 'journal-recovery-failed');
  t.equal(f?.class, 'corruption');
  t.equal(f?.recovery, 'e2fsck');
  t.match(f?.message, /\(Invalid argument\)/);
  const bad = run(
    'journal-only',
    'Error "Inode does not use extents" encountered in function ext4_fc_read_extents at line 589\n/usr/sbin/e2fsck: Bad address while recovering journal of work-0.img\n',
  );
  const [g] = journalRecoveryFindings([bad], 'e2fsck');
  t.match(g?.message, /\(Bad address\)/);
  t.match(g?.detail, /ext4_fc_read_extents/);
});

t.test('a replay that worked, and other runs, say nothing', async (t) => {
  t.same(journalRecoveryFindings([run('journal-only', 'work-0.img: recovering journal\n')], 'e2fsck'), []);
  t.same(journalRecoveryFindings([run('check', 'x while recovering journal of y\n')], 'e2fsck'), []);
});
