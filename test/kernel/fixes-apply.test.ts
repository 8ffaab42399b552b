import t from 'tap';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { projectRoot } from '../../harness/util/paths.ts';
import { linuxSourceFiles, linuxSources } from './linux-source-files.ts';

// Each fix in kernels/fixes/ applies to both kernel lines qcrash builds
// (Debian's linux-source-6.1 and linux-source-6.12), alone and as the
// series, and a second application is refused: the check can fail. A fix
// in kernels/fixes/<line>/ is for the code of that line only: it applies
// there, alone and on top of the series.
const fixesDir = join(projectRoot, 'kernels', 'fixes');
const patches = (await readdir(fixesDir)).filter((f) => f.endsWith('.patch')).sort();
const work = await mkdtemp(join(tmpdir(), 'fixes-apply-'));
t.teardown(() => rm(work, { recursive: true, force: true }));

/** A folder holding only the line's fs/ext4/migrate.c, the one file the fixes change. */
async function tree(src: string, name: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(join(dir, 'fs', 'ext4'), { recursive: true });
  await copyFile(join(src, 'fs', 'ext4', 'migrate.c'), join(dir, 'fs', 'ext4', 'migrate.c'));
  return dir;
}

/** kernels/fixes/<line>/'s mails, full paths ([] when the line has none). */
async function lineFixes(line: string): Promise<string[]> {
  const names = await readdir(join(fixesDir, line)).catch(() => [] as string[]);
  return names
    .filter((f) => f.endsWith('.patch'))
    .sort()
    .map((f) => join(fixesDir, line, f));
}

const apply = (dir: string, args: string[]) =>
  execa('git', ['apply', ...args], { cwd: dir, reject: false, env: { GIT_DIR: join(dir, 'no-git') } });

t.ok(patches.length >= 2, `kernels/fixes/ holds the fixes (${patches.join(', ')})`);

for (const [line, tarball] of Object.entries(linuxSources)) {
  t.test(`linux-source-${line}`, async (t) => {
    const src = await linuxSourceFiles(tarball).catch((e: Error) => {
      throw new Error(
        `linux-source-${line} is needed (.ci/install installs it: apt-get install linux-source-${line}): ${e.message}`,
      );
    });
    for (const p of patches) {
      const dir = await tree(src, `${line}-${p}`);
      const file = join(fixesDir, p);
      const r = await apply(dir, ['--check', file]);
      t.equal(r.exitCode, 0, `${p} applies alone`, { stderr: r.stderr });
      t.equal((await apply(dir, [file])).exitCode, 0, `${p} applied`);
      const again = await apply(dir, ['--check', file]);
      t.not(again.exitCode, 0, `${p} does not apply a second time: the check can fail`);
    }
    const series = await tree(src, `${line}-series`);
    const r = await apply(
      series,
      patches.map((p) => join(fixesDir, p)),
    );
    t.equal(r.exitCode, 0, 'the series applies in order', { stderr: r.stderr });
    for (const file of await lineFixes(line)) {
      const alone = await tree(src, `${line}-own-${file.split('/').pop()}`);
      t.equal((await apply(alone, ['--check', file])).exitCode, 0, `${line}/${file.split('/').pop()} applies alone`);
      const onSeries = await apply(series, [file]);
      t.equal(onSeries.exitCode, 0, `${line}/${file.split('/').pop()} applies on top of the series`, { stderr: onSeries.stderr });
    }
  });
}

t.test('a line-only fix is for code the other line does not have', async (t) => {
  const own = await lineFixes('6.12');
  t.ok(own.length >= 1, 'kernels/fixes/6.12/ holds the 6.12-only fix');
  const src = await linuxSourceFiles(linuxSources['6.1']);
  for (const file of own) {
    const dir = await tree(src, `6.1-not-${file.split('/').pop()}`);
    t.not((await apply(dir, ['--check', file])).exitCode, 0, `${file.split('/').pop()} does not apply to 6.1`);
  }
});
