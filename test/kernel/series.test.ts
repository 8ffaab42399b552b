import t from 'tap';
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildKernel } from '../../harness/kernel/build.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';
import type { SeriesFinding } from '../../harness/validate/model.ts';
import { scenariosDir } from '../../harness/util/paths.ts';
import { qcrash } from '../helpers/cli.ts';
import { commentOnlyPatch } from '../helpers/patches.ts';

// `qcrash validate --series` on real kernels: a three-patch series in one
// mbox with a cover letter (as git format-patch --cover-letter and
// b4 write them): a harmless comment, mutant 03 from ../shared/mutants (the
// inode is not marked dirty after the swap), another harmless comment. The
// second patch must be named as the one that introduced the durability
// finding, the other two get a Tested-by. Kernels: the baseline is the one
// build.test.ts builds and patch 1's is the one mutants.test.ts builds for
// its comment-only patch (same text, so same cache key); 1-2 and 1-3 are new,
// each a one-file rebuild through the object dir and ccache. Only the
// scenario that catches mutant 03 runs (scenarios/validate/durability.yaml).
const dir = await mkdtemp(join(tmpdir(), 'series-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const mutant03 = new URL('../../../shared/mutants/03-no-mark-dirty-after-swap.patch', import.meta.url).pathname;

const mailHead = (subject: string) =>
  [
    'From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001',
    'From: qcrash <qcrash@localhost>',
    'Date: Tue, 24 Nov 2026 12:00:00 +0000',
    `Subject: ${subject}`,
    '',
  ].join('\n');
const cover = `${mailHead('[PATCH 0/3] ext4: comments around the migration, and a planted bug')}
Patch 2 is qcrash's mutant 03: the inode is no longer marked dirty after
the swap, so a migrated direct-only file loses its extent flag.

qcrash (3):
  ext4: comment the migration entry point
  ext4: do not mark the inode dirty after the swap
  ext4: say who calls ext4_ext_migrate

 fs/ext4/migrate.c | 12 ++++++------
 1 file changed, 6 insertions(+), 6 deletions(-)

-- 
2.39.5

`;
// git am takes the mutant's description as the commit message and its diff as the patch.
const mutantMail = `${mailHead('[PATCH 2/3] ext4: do not mark the inode dirty after the swap')}\n${await readFile(mutant03, 'utf8')}`;
const thirdMail = `${mailHead('[PATCH 3/3] ext4: say who calls ext4_ext_migrate')}
A comment, nothing else.
---
 fs/ext4/migrate.c | 1 +
 1 file changed, 1 insertion(+)

--- a/fs/ext4/migrate.c
+++ b/fs/ext4/migrate.c
@@ -405,6 +405,7 @@
 	return retval;
 }
 
+/* Called by FS_IOC_SETFLAGS (chattr +e) with the inode locked. */
 int ext4_ext_migrate(struct inode *inode)
 {
 	handle_t *handle;
-- 
2.39.5
`;

t.test(
  'validate --series names mutant 03, the second of three patches, as the one that introduced the finding',
  { timeout: 3600_000 },
  async (t) => {
    const mbox = join(dir, 'series.mbox');
    await writeFile(mbox, cover + commentOnlyPatch + mutantMail + '\n' + thirdMail);
    const out = join(dir, 'out');
    const started = Date.now();
    const r = await qcrash(
      [
        'validate',
        '--series',
        '--patch',
        mbox,
        '--confirm',
        '1',
        '--seed',
        '1',
        '-o',
        out,
        join(scenariosDir, 'validate', 'durability.yaml'),
      ],
      { timeoutMs: 3600_000 },
    );
    const secs = (Date.now() - started) / 1000;
    const hits = r.stderr.split('\n').filter((l) => /built before, taken from the cache/.test(l));
    t.comment(`validate --series: ${secs.toFixed(0)} s, ${hits.length} of 4 kernels from the cache:\n${hits.join('\n')}`);
    if (r.code !== 1) t.comment(`stderr:\n${r.stderr.slice(-3000)}`);
    t.equal(r.code, 1, 'exit 1: a patch introduced a finding');

    const text = r.stdout;
    t.equal(text.trimEnd(), (await readFile(join(out, 'validate.txt'), 'utf8')).trimEnd(), 'stdout is validate.txt');
    t.match(text, /^ {2}skipped \(cover letter\): \[PATCH 0\/3\] ext4: comments around the migration/m);
    const section = (n: number) =>
      text.slice(text.indexOf(`\npatch ${n}/3: `), text.indexOf(n < 3 ? `\npatch ${n + 1}/3: ` : '\nFindings'));
    t.match(section(1), /introduced by this patch: 0\n/, 'patch 1 introduced nothing');
    t.match(
      section(2),
      /INTRODUCED by this patch \(confirmed on rerun\): \d+\n {4}validate\/durability \| [^\n]* \| data \| not-durable/,
      'patch 2 introduced the durability finding',
    );
    t.match(section(3), /introduced by this patch: 0\n/, 'patch 3 introduced nothing');
    t.match(section(3), /left as they were: [1-9]\d*\n {4}validate\/durability \| [^\n]* \| data \| not-durable/, 'and left it');
    t.match(text, /^Result: REGRESSION: patch 2\/3 introduced findings/m);
    const tail = text.slice(text.indexOf('Tested-by, for'));
    t.same(
      tail
        .split('\n')
        .filter((l) => /^(patch \d|Tested-by:)/.test(l))
        .map((l) => l.replace(/\(.*/, '')),
      [
        'patch 1/3: [PATCH] ext4: comment the migration entry point',
        'Tested-by: qcrash ',
        'patch 3/3: [PATCH 3/3] ext4: say who calls ext4_ext_migrate',
        'Tested-by: qcrash ',
      ],
      'a Tested-by for patches 1 and 3 only',
    );

    const json = JSON.parse(await readFile(join(out, 'series.json'), 'utf8')) as {
      baseline: { kernel: KernelInfo };
      steps: Array<{ kernel: KernelInfo; introduced: unknown[] }>;
      findings: SeriesFinding[];
    };
    const durability = json.findings.filter((f) => /\| data \| not-durable/.test(f.signature));
    t.ok(durability.length > 0, 'the not-durable finding is followed along the series');
    for (const f of durability) {
      t.equal(f.introducedBy, 2, `${f.signature}: first introduced by patch 2`);
      t.same(f.seen, [false, false, true, true], 'not on the baseline nor after patch 1; after 2 and 3');
    }
    t.same(
      json.findings.filter((f) => f.seen[0]),
      [],
      'the baseline has no failing finding',
    );

    // The kernels the suite builds elsewhere: the baseline (build.test.ts) and
    // the comment-only patch alone (mutants.test.ts) are the series' first two.
    const commentFile = join(dir, 'comment.patch');
    await writeFile(commentFile, commentOnlyPatch);
    t.equal(json.baseline.kernel.id, (await buildKernel()).id, 'the baseline is the kernel build.test.ts builds');
    t.equal(
      json.steps[0]!.kernel.id,
      (await buildKernel({ patches: [commentFile] })).id,
      "patch 1's kernel is the one mutants.test.ts builds for its comment-only patch",
    );
    t.equal(new Set([json.baseline.kernel.id, ...json.steps.map((s) => s.kernel.id)]).size, 4, 'four kernels');
  },
);
