import t from 'tap';
import { runSpawned, spawnerCpuMs } from '../../harness/image/spawner.ts';

// The tool spawner returns what execa's run returned: exit code, both streams, the environment asked for.
t.test('a program run through the spawner: exit code, stdout, stderr, env', async (t) => {
  const r = await runSpawned('/bin/sh', ['-c', 'echo out; echo err >&2; echo "$QCRASH_T"; exit 3'], {
    env: { QCRASH_T: 'here' },
  });
  t.equal(r.exitCode, 3);
  t.equal(r.stdout, 'out\nhere\n');
  t.equal(r.stderr, 'err\n');
  t.equal(r.failed, true);
  t.same(r.argv.slice(0, 2), ['/bin/sh', '-c']);
  t.ok((await spawnerCpuMs()) >= 0);
});

t.test('a program that cannot start has no exit code and says why', async (t) => {
  const r = await runSpawned('/nonexistent/qcrash-tool', []);
  t.equal(r.exitCode, undefined);
  t.match(r.stderr, /ENOENT/);
});

t.test('a timeout kills the program', async (t) => {
  const r = await runSpawned('/bin/sleep', ['5'], { timeoutMs: 200 });
  t.equal(r.exitCode, undefined);
  t.equal(r.signal, 'SIGKILL');
});

t.test('many at once each get their own answer', async (t) => {
  const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => runSpawned('/bin/sh', ['-c', `echo ${i}`])));
  t.same(
    rs.map((r) => r.stdout.trim()),
    Array.from({ length: 20 }, (_, i) => String(i)),
  );
});

t.test('input: the program reads it on its stdin (debugfs -f - takes its commands this way)', async (t) => {
  const r = await runSpawned('/bin/sh', ['-c', 'cat; echo done'], { input: 'stat /\nstat /a\n' });
  t.equal(r.stdout, 'stat /\nstat /a\ndone\n');
  const none = await runSpawned('/bin/sh', ['-c', 'cat; echo done']);
  t.equal(none.stdout, 'done\n', 'without input, stdin is empty');
});
