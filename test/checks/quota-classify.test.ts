import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseProblemLog } from '../../harness/image/e2fsck.ts';
import { classifyProblems } from '../../harness/checks/classify.ts';
import { problemInfo } from '../../harness/checks/problem-codes.ts';

// Real e2fsck 1.47.0 -fn output (text and problem log) on two quota images:
// usage.*: mkfs -O quota -d, whose quota inodes count the empty filesystem only;
// damaged.*: the user quota file's first block overwritten.
const fx = (f: string) => readFile(join(import.meta.dirname, '../fixtures/checks/quota', f), 'utf8');
const ctx = { manifestInodes: new Map<number, string>(), migratedInodes: new Set<number>(), recovery: 'e2fsck' as const };

t.test('inconsistent usage: one quota-usage-inconsistent finding per quota type, with the warnings', async (t) => {
  const problems = parseProblemLog(await fx('usage.xml'));
  t.same(
    problems.map((p) => p.codeHex),
    ['0x060002', '0x060002', '0x060002'],
    'e2fsck asks once per quota type',
  );
  const f = classifyProblems(problems, await fx('usage.txt'), ctx);
  t.same(
    f.map((x) => x.code),
    ['quota-usage-inconsistent', 'quota-usage-inconsistent', 'quota-usage-inconsistent'],
  );
  t.ok(
    f.every((x) => x.class === 'corruption' && x.name === 'PR_6_UPDATE_QUOTAS'),
    "corruption, under e2fsprogs' name",
  );
  t.match(f[1]!.message, /^group quota: usage inconsistent/);
  t.match(f[0]!.detail, /Usage inconsistent for ID 0/);
});

t.test('a quota file that does not parse: quota-file-damaged, not usage', async (t) => {
  const problems = parseProblemLog(await fx('damaged.xml'));
  const f = classifyProblems(problems, await fx('damaged.txt'), ctx);
  t.same(
    f.map((x) => x.code),
    ['quota-file-damaged'],
  );
  t.match(f[0]!.message, /user quota: quota file unreadable.*check_file failed/);
});

t.test('quota inode problems of pass 0 and 1 are quota-file-damaged, and named', async (t) => {
  const f = classifyProblems([{ code: 0x010062, codeHex: '0x010062', pass: 1, ino: 4, attrs: {} }], '', ctx);
  t.same(
    f.map((x) => [x.code, x.name, x.ino]),
    [['quota-file-damaged', 'PR_1_QUOTA_BAD_MODE', 4]],
  );
  t.equal(problemInfo(0x00004f).name, 'PR_0_INVALID_QUOTA_INO');
});
