import t from 'tap';
import { execa } from 'execa';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { projectRoot } from '../../harness/util/paths.ts';

// .ci/run ends a failing run's log with scripts/ci-failures.mjs's digest:
// CI logs are read from the tail, and one failure among 5000 assertions is
// otherwise a second 20-minute run to find.
const script = join(projectRoot, 'scripts', 'ci-failures.mjs');

t.test('the digest names each failing assertion once, with its subtests and diagnostics', async (t) => {
  const r = await execa('node', [script, join(projectRoot, 'test/fixtures/ci/failing.tap')]);
  t.match(r.stdout, /2 failing assertion\(s\)/);
  t.match(r.stdout, /test\/a\.test\.ts > group one\n {2}not ok 2 - values differ\n {4}found: 3\n {4}wanted: 4/);
  t.match(r.stdout, /test\/a\.test\.ts\n {2}not ok 3 - top-level assertion/);
  t.notMatch(r.stdout, /not ok 1 - group one/, 'a subtest that failed through its child is not repeated');
  t.notMatch(r.stdout, /not ok 1 - test\/a\.test\.ts/, 'nor the file that holds it');
});

t.test('a test file that died without a failing assertion is named with what tap said', async (t) => {
  const tap = t.testdir({ 'crashed.tap': 'not ok 1 - test/x.test.ts # time=5ms\n  ---\n  exitCode: 1\n  ...\n' });
  const r = await execa('node', [script, join(tap, 'crashed.tap')]);
  t.match(r.stdout, /not ok 1 - test\/x\.test\.ts.*\n {4}exitCode: 1/);
});

t.test('a passing log prints nothing', async (t) => {
  const dir = t.testdir({});
  await writeFile(join(dir, 'ok.tap'), '# Subtest: a\n    ok 1 - x\nok 1 - a\n# todo\nnot ok 2 - later # TODO\n');
  const r = await execa('node', [script, join(dir, 'ok.tap')]);
  t.equal(r.stdout, '');
});
