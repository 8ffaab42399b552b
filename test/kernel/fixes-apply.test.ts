import t from 'tap';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { projectRoot } from '../../harness/util/paths.ts';
import { linuxSourceFiles, linuxSources } from './linux-source-files.ts';

// Each fix in kernels/fixes/ applies to both kernel lines qcrash builds
// (Debian's linux-source-6.1 and linux-source-6.12), alone and as the
// series, and a second application is refused: the check can fail.
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
  });
}
