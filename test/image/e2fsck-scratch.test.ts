import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { e2fsckScratchSettled, runE2fsck } from '../../harness/image/e2fsck.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// e2fsck's problem logs and config live in one scratch folder that stays
// while runs follow each other (a write-log check runs e2fsck between
// stretches of its own work, and making the folder again each time cost
// the harness about half a millisecond a state), and goes once idle: never
// left behind by a process that goes on (e2fsckScratchSettled) or one that
// simply ends.
const tmp = await TempDir.create('e2fsck-scratch-test');
t.teardown(() => tmp.remove());
const img = tmp.join('fs.img');
execFileSync('mkfs.ext4', ['-q', '-F', img, '4M'], { stdio: 'ignore' });

const scratchDirs = (pid: number) => readdirSync(tmpdir()).filter((d) => d.startsWith(`qcrash-e2fsck-p${pid}-`));

t.test('runs a moment apart share the folder; settled, it is gone', async (t) => {
  await runE2fsck(img, 'check');
  const first = scratchDirs(process.pid);
  t.equal(first.length, 1, 'one scratch folder after a run');
  await new Promise((r) => setTimeout(r, 20));
  await runE2fsck(img, 'check');
  t.same(scratchDirs(process.pid), first, 'the next run, 20 ms later, used the same folder');
  await e2fsckScratchSettled();
  t.same(scratchDirs(process.pid), [], 'settled: no folder left');
});

for (const [how, end] of [
  ['ends on its own', ''],
  ['calls process.exit() at once', 'process.exit(0);\n'],
] as const)
  t.test(`a process that ${how} after a run leaves no folder`, async (t) => {
    const script = tmp.join(`child-${end ? 'exit' : 'end'}.mts`);
    writeFileSync(
      script,
      `import { runE2fsck } from ${JSON.stringify(new URL('../../harness/image/e2fsck.ts', import.meta.url).pathname)};\n` +
        `await runE2fsck(${JSON.stringify(img)}, 'check');\nconsole.log(process.pid);\n${end}`,
    );
    const pid = Number(execFileSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8' }).trim());
    t.ok(pid > 0, `the child ran e2fsck (pid ${pid})`);
    t.same(scratchDirs(pid), [], 'its scratch folder went with it');
  });
