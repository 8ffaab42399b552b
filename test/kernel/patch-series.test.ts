import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { hasDiff, patchSubject, readPatchSeries, splitMbox } from '../../harness/kernel/patch-series.ts';
import { ConfigError } from '../../harness/util/errors.ts';
import { sha256 } from '../../harness/util/hash.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// Series as git format-patch and b4 write them (test/fixtures/series/, made
// by make.sh there with git 2.39 and b4 0.12): split into patches byte for
// byte, cover letters skipped, and each piece applies with git am in order.
const fixtures = new URL('../fixtures/series/', import.meta.url).pathname;
const tmp = await TempDir.create('patch-series-test');
t.teardown(() => tmp.remove());

t.test('git format-patch --cover-letter, concatenated: the cover letter is skipped, two patches', async (t) => {
  const mbox = join(fixtures, 'format-patch.mbox');
  const s = await readPatchSeries([mbox], join(tmp.path, 'fp'));
  t.same(
    s.patches.map((p) => [p.index, p.subject]),
    [
      [1, '[PATCH 1/2] ext4: note the first variable'],
      [2, '[PATCH 2/2] ext4: note the third variable'],
    ],
  );
  t.same(s.skipped, [{ origin: `${mbox} (mail 1 of 3)`, subject: '[PATCH 0/2] ext4: note two variables', why: 'cover letter' }]);
  t.match(
    s.patches[1]!.text,
    /^From now on the third is noted too\.$/m,
    'a body line starting with "From " does not split a mail',
  );
  t.equal(
    s.patches.map((p) => p.text).join(''),
    splitMbox(await readFile(mbox, 'utf8'))
      .slice(1)
      .join(''),
    'the two patches are the file after the cover letter, byte for byte',
  );
  for (const p of s.patches) {
    t.equal(await readFile(p.file, 'utf8'), p.text, `${p.file} holds the mail byte for byte`);
    t.equal(p.sha256, sha256(p.text));
  }
  t.match(
    s.patches.map((p) => p.file.split('/').pop()),
    ['0001-ext4-note-the-first-variable.patch', '0002-ext4-note-the-third-variable.patch'],
  );
});

t.test('the pieces of an mbox are the mails as they stand: concatenated they give the file back', async (t) => {
  const text = await readFile(join(fixtures, 'format-patch.mbox'), 'utf8');
  const mails = splitMbox(text);
  t.equal(mails.length, 3);
  t.equal(mails.join(''), text);
  t.ok(mails.every((m) => m.startsWith('From ')));
});

t.test('b4 am output: patches only in the .mbx, the .cover is a mail without a diff', async (t) => {
  const s = await readPatchSeries([join(fixtures, 'b4-am.cover'), join(fixtures, 'b4-am.mbx')], join(tmp.path, 'b4'));
  t.same(
    s.patches.map((p) => p.subject),
    ['[PATCH 1/2] ext4: note the first variable', '[PATCH 2/2] ext4: note the third variable'],
  );
  t.same(
    s.skipped.map((x) => [x.subject, x.why]),
    [['[PATCH 0/2] ext4: note two variables', 'cover letter']],
  );
  t.match(s.patches[0]!.text, /^From git@z Thu Jan {2}1 00:00:00 1970\n/);
});

t.test('the pieces apply in order with git am, as the kernel build applies them', async (t) => {
  const repo = join(tmp.path, 'toy');
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: repo,
      encoding: 'utf8',
      env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' },
    });
  execFileSync('git', ['init', '-q', repo]);
  await writeFile(join(repo, 'migrate.c'), 'int a;\nint b;\nint c;\n');
  git('add', 'migrate.c');
  git('commit', '-qm', 'base');
  const s = await readPatchSeries([join(fixtures, 'b4-am.mbx')], join(tmp.path, 'b4-apply'));
  for (const p of s.patches) git('am', '-q', p.file);
  t.equal(await readFile(join(repo, 'migrate.c'), 'utf8'), 'int a; /* first */\nint b;\nint c; /* third */\n');
  t.same(git('log', '--format=%s', '-2').trim().split('\n'), ['ext4: note the third variable', 'ext4: note the first variable']);
});

t.test('a file with one patch is used as it is; plain diffs keep their description line as subject', async (t) => {
  const diff = join(tmp.path, 'plain.patch');
  await writeFile(diff, 'Make b louder.\n\n--- a/migrate.c\n+++ b/migrate.c\n@@ -2 +2 @@\n-int b;\n+int b; /* b */\n');
  const one = join(tmp.path, 'one.patch');
  const fp = splitMbox(await readFile(join(fixtures, 'format-patch.mbox'), 'utf8'));
  await writeFile(one, fp[1]!);
  const s = await readPatchSeries([one, diff], join(tmp.path, 'mixed'));
  t.same(
    s.patches.map((p) => [p.index, p.file, p.subject]),
    [
      [1, one, '[PATCH 1/2] ext4: note the first variable'],
      [2, diff, 'Make b louder.'],
    ],
  );
  t.same(s.skipped, []);
});

t.test('folded subjects are unfolded', async (t) => {
  t.equal(
    patchSubject(
      'From x Mon Sep 17 00:00:00 2001\nSubject: [PATCH v2 3/7] ext4: a subject long enough\n to be folded\nFrom: a\n\nbody\n',
      'f',
    ),
    '[PATCH v2 3/7] ext4: a subject long enough to be folded',
  );
  t.notOk(hasDiff(' migrate.c | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)\n'), 'a diffstat is no diff');
  t.notOk(hasDiff('> --- a/migrate.c\n> +++ b/migrate.c\n'), 'a quoted diff in a reply is no diff');
});

t.test('only cover letters, or nothing: a ConfigError that says so', async (t) => {
  const e = await readPatchSeries([join(fixtures, 'b4-am.cover')], join(tmp.path, 'none')).catch((x: unknown) => x);
  t.ok(e instanceof ConfigError);
  t.match(
    (e as Error).message,
    /no patch in .*b4-am\.cover: only mails without a diff \("\[PATCH 0\/2\] ext4: note two variables"\)/,
  );
  const missing = await readPatchSeries([join(tmp.path, 'nope.mbox')], join(tmp.path, 'none')).catch((x: unknown) => x);
  t.match((missing as Error).message, /patch not found: .*nope\.mbox/);
  const none = await readPatchSeries([], join(tmp.path, 'none')).catch((x: unknown) => x);
  t.ok(none instanceof ConfigError);
});
