import t from 'tap';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { projectRoot } from '../../harness/util/paths.ts';
import { linuxSourceFiles, linuxSources } from './linux-source-files.ts';

// The fixes in kernels/fixes/ must pass the kernel's own checkpatch.pl, from
// each line's source package, apart from what cannot hold here:
// - MISSING_SIGN_OFF: the mails carry no Signed-off-by; whoever sends one adds theirs.
// - UNKNOWN_COMMIT_ID: checkpatch checks a Fixes: id with `git log` in a
//   kernel git history, which the source packages lack; without one it
//   reports every id as unknown. The ids' form (12+ hex digits and the
//   subject in ("...")) is still checked, by checkpatch's GIT_COMMIT_ID and
//   BAD_FIXES_TAG and below.
const fixesDir = join(projectRoot, 'kernels', 'fixes');
// The fixes for every line, and those for one line only (kernels/fixes/<line>/), as paths under kernels/fixes/.
const patches = [
  ...(await readdir(fixesDir)).filter((f) => f.endsWith('.patch')).sort(),
  ...(
    await Promise.all(
      Object.keys(linuxSources).map(async (line) =>
        (await readdir(join(fixesDir, line)).catch(() => [] as string[]))
          .filter((f) => f.endsWith('.patch'))
          .sort()
          .map((f) => join(line, f)),
      ),
    )
  ).flat(),
];
const allowed = ['MISSING_SIGN_OFF', 'UNKNOWN_COMMIT_ID'];
// Outside any git repository, so checkpatch does not read the qcrash repository's history.
const work = await mkdtemp(join(tmpdir(), 'checkpatch-'));
t.teardown(() => rm(work, { recursive: true, force: true }));

interface Checked {
  errors: number;
  warnings: number;
  types: string[];
  output: string;
}

async function checkpatch(scripts: string, patch: string, ignore: string[]): Promise<Checked> {
  const args = [
    join(scripts, 'checkpatch.pl'),
    '--no-tree',
    '--show-types',
    '--no-color',
    ...(ignore.length ? ['--ignore', ignore.join(',')] : []),
    patch,
  ];
  const r = await execa('perl', args, { cwd: work, reject: false, env: { GIT_DIR: join(work, 'no-git') } });
  const total = /total: (\d+) errors, (\d+) warnings/.exec(r.stdout);
  if (!total) throw new Error(`checkpatch printed no total for ${patch}:\n${r.stdout}\n${r.stderr}`);
  const types = [...new Set([...r.stdout.matchAll(/^(?:ERROR|WARNING|CHECK):([A-Z_]+):/gm)].map((m) => m[1]!))].sort();
  return { errors: Number(total[1]), warnings: Number(total[2]), types, output: r.stdout };
}

t.ok(patches.length >= 2, `kernels/fixes/ holds the fixes (${patches.join(', ')})`);

for (const p of patches) {
  t.test(`${p}: a mail in the kernel's form`, async (t) => {
    const text = await readFile(join(fixesDir, p), 'utf8');
    t.match(text, /^From [0-9a-f]{40} /, 'made by git format-patch');
    t.match(text, /^Subject: \[PATCH[^\]]*\] ext4: /m, 'subject in the ext4: form');
    // A fix of a change whose id cannot be looked up here (no kernel git
    // history) says so, and how to find it, instead of guessing one.
    t.match(
      text,
      /^Fixes: [0-9a-f]{12} \("[^"]+"\)$|^No Fixes: tag yet: [\s\S]*?git log -S/m,
      'a Fixes: tag with a 12-digit id and the subject, or how to find the id',
    );
    t.notMatch(text, /^Signed-off-by:/im, 'no Signed-off-by for anyone');
    t.match(text, /qcrash/, 'says how qcrash shows the bug');
  });
}

for (const [line, tarball] of Object.entries(linuxSources)) {
  t.test(`checkpatch.pl of linux-source-${line}`, async (t) => {
    const src = await linuxSourceFiles(tarball).catch((e: Error) => {
      throw new Error(
        `linux-source-${line} is needed (.ci/install installs it: apt-get install linux-source-${line}): ${e.message}`,
      );
    });
    const scripts = join(src, 'scripts');
    for (const p of patches) {
      const r = await checkpatch(scripts, join(fixesDir, p), allowed);
      t.same(
        { errors: r.errors, warnings: r.warnings },
        { errors: 0, warnings: 0 },
        `${p}: clean apart from ${allowed.join(', ')}`,
        { output: r.output },
      );
      const all = await checkpatch(scripts, join(fixesDir, p), []);
      t.ok(all.types.includes('MISSING_SIGN_OFF'), `${p}: without --ignore, checkpatch sees the missing sign-off`);
      t.same(
        all.types.filter((x) => !allowed.includes(x)),
        [],
        `${p}: and nothing else but ${allowed.join(', ')}`,
        { output: all.output },
      );
    }

    // The same check on a copy with a style error must fail: trailing
    // whitespace on the first added line of the diff.
    const bad = join(work, `bad-${line}.patch`);
    const good = await readFile(join(fixesDir, patches[0]!), 'utf8');
    const at = good.indexOf('\n+', good.indexOf('\n@@ '));
    await writeFile(bad, `${good.slice(0, good.indexOf('\n', at + 1))} ${good.slice(good.indexOf('\n', at + 1))}`);
    const r = await checkpatch(scripts, bad, allowed);
    t.ok(r.errors > 0, `a copy with trailing whitespace fails (${r.errors} error(s))`);
    t.ok(r.types.includes('TRAILING_WHITESPACE'), 'checkpatch names it', { types: r.types });
  });
}
