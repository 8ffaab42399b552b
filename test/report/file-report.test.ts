import t from 'tap';
import { fileReport, fileReportText } from '../../harness/results/file-report.ts';
import type { CaseResult } from '../../harness/results/case.ts';
import type { Finding } from '../../harness/findings/finding.ts';
import type { MigrateReport } from '../../harness/crash/step-report.ts';

// The per-file report of a run on a user's image is derived from the cases:
// the no-crash case's per-file ioctl results, and the findings that name a
// file. Cases written by hand here, so every verdict it can give is shown.
const migrate: MigrateReport = {
  kind: 'migrate',
  files: [
    { step: 'migrate', path: '/', type: 'dir', ret: 0, errno: 0 },
    { step: 'migrate', path: '/a', type: 'file', ret: 0, errno: 0 },
    { step: 'migrate', path: '/b', type: 'file', ret: 0, errno: 0 },
    { step: 'migrate', path: '/c', type: 'file', ret: -1, errno: 95 },
    { step: 'migrate', path: '/d', type: 'file', ret: 1, errno: 0 },
    { step: 'migrate', path: '/e', type: 'file', ret: -1, errno: 1 },
  ],
  skipped: [{ path: '/l', type: 'symlink' }],
  errors: [],
};
const finding = (
  code: string,
  path: string,
  cls: Finding['class'] = 'data',
  recovery: Finding['recovery'] = 'e2fsck',
): Finding => ({ class: cls, source: 'content', code, name: code, message: `${path}: ${code}`, path, recovery });
function caseOf(point: string, findings: Finding[], failing = findings, steps = true): CaseResult {
  return {
    id: `img/${point}/r1`,
    scenario: 'img',
    suite: 'image',
    pointLabel: point,
    repetition: 1,
    seed: 1,
    status: failing.length ? 'fail' : 'pass',
    findings,
    failing,
    allow: { classes: ['leak'], codes: [] },
    durationMs: 1,
    dir: '',
    steps: [
      { name: 'mount', kind: 'mount', exitCode: 0 },
      { name: 'migrate', kind: 'migrate', ...(steps ? { exitCode: 0, report: migrate } : {}) },
    ],
  };
}

const noKill = caseOf('no-kill', [
  finding('content-changed', '/a'),
  finding('mapping-changed', '/a', 'data', 'kernel'),
  finding('migrated-despite-error', '/e'),
]);
const leak = finding('PR_1_ZERO_DTIME', '/b', 'leak');
const crash1 = caseOf('before-migrate', [], [], false);
const crash2 = caseOf('during-migrate-100ms', [finding('not-durable', '/b'), leak], [finding('not-durable', '/b')]);
const errored: CaseResult = { ...caseOf('after-sync', [finding('missing', '/b')]), status: 'error' };
const rep = fileReport('img', [crash1, noKill, crash2, errored], '/x/user.img');
const row = (p: string) => rep.rows.find((r) => r.path === p)!;

t.test('what the ioctl said, from the run without a crash', async (t) => {
  t.equal(rep.reference, 'img/no-kill/r1');
  t.same(
    rep.rows.map((r) => [r.path, r.ioctl, r.why]),
    [
      ['/', 'migrated', undefined],
      ['/a', 'migrated', undefined],
      ['/b', 'migrated', undefined],
      ['/c', 'refused', 'EOPNOTSUPP (95)'],
      ['/d', 'bad-return', 'returned 1'],
      ['/e', 'refused', 'EPERM (1)'],
      ['/l', 'skipped', undefined],
    ],
  );
  t.same(rep.counts, { migrated: 3, refused: 2, badReturn: 1, skipped: 1, notAsked: 0, noCrashDamaged: 2, crashDamaged: 1 });
});

t.test('what the migration without a crash did to each file', async (t) => {
  t.same(
    row('/a').noCrash,
    { bytes: false, blocks: false, mapping: true, codes: ['content-changed', 'mapping-changed'] },
    'bytes and blocks, under either recovery',
  );
  t.same(
    row('/e').noCrash,
    { bytes: true, blocks: true, mapping: false, codes: ['migrated-despite-error'] },
    'refused yet extent-mapped',
  );
  t.same(row('/c').noCrash, { bytes: true, blocks: true, mapping: true, codes: [] });
});

t.test('crash cases: failing findings that name a file; leaks and errored cases are not damage', async (t) => {
  t.equal(rep.crashCases, 2, 'the no-crash case and the errored one are not crash cases checked');
  t.same(row('/b').damaged, [{ case: 'img/during-migrate-100ms/r1', recovery: 'e2fsck', code: 'not-durable' }]);
  t.same(row('/a').damaged, []);
});

t.test('the text: one line per file', async (t) => {
  const text = fileReportText(rep);
  t.match(
    text,
    /^\/a: migrated; BYTES CHANGED, BLOCKS MOVED, extents, findings: content-changed, mapping-changed; survived 2 crash cases$/m,
  );
  t.match(text, /^\/b: migrated; bytes ok, blocks ok, extents; DAMAGED in 1 of 2 crash cases \(not-durable \[e2fsck\]\)$/m);
  t.match(text, /^\/c: refused EOPNOTSUPP \(95\); bytes ok, blocks ok, still block-mapped; survived 2 crash cases$/m);
  t.match(text, /^\/e: refused EPERM \(1\); bytes ok, blocks ok, EXTENTS DESPITE REFUSAL, findings: migrated-despite-error/m);
  t.match(text, /^\/ \(dir\): migrated; present, extents/m);
});

t.test('without a completed no-crash case, the first completed migration gives the ioctl results', async (t) => {
  const r = fileReport('img', [crash1, crash2]);
  t.equal(r.reference, 'img/during-migrate-100ms/r1');
  t.equal(r.rows.find((x) => x.path === '/a')!.noCrash, undefined, 'and nothing is claimed about a run that did not happen');
  t.match(fileReportText(r), /no crash: no no-crash case completed/);
});
