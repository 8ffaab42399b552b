import t from 'tap';
import { cp, mkdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  dryRunCompileCount,
  dryRunMisses,
  defaultRelinkObjects,
  estimateBuild,
  parseCmdFile,
  readBuildStats,
  recordBuildStats,
  staleObjects,
} from '../../harness/kernel/build-estimate.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// .cmd files copied from the object dir of a real build of linux-source-6.1
// (minimal config): lib/ctype.o (a C object), arch/x86/boot/compressed/piggy.o
// (assembled from a generated source), fs/ext4/built-in.a (an archive: not a
// compiled object).
const cmdFixtures = new URL('../fixtures/kernel/cmd/', import.meta.url).pathname;
const tmp = await TempDir.create('build-estimate');
t.teardown(() => tmp.remove());
process.env.QCRASH_CACHE = tmp.join('cache');

t.test('parseCmdFile reads the source and every dependency fixdep recorded', async (t) => {
  const ctype = parseCmdFile(await readFile(join(cmdFixtures, 'lib/.ctype.o.cmd'), 'utf8'))!;
  t.equal(ctype.target, 'lib/ctype.o');
  t.equal(ctype.source, '../lib/ctype.c');
  t.ok(ctype.deps.some((d) => d.path === '../include/linux/ctype.h' && !d.optional));
  t.ok(
    ctype.deps.some((d) => d.path === 'include/config/KCSAN' && d.optional),
    'config options as $(wildcard)',
  );
  t.ok(
    ctype.deps.some((d) => d.path === './tools/objtool/objtool' && d.optional),
    'and objtool, which rewrites the object',
  );
  t.equal(ctype.deps.at(-1)!.path, './tools/objtool/objtool');
  t.ok(
    ctype.deps.some((d) => d.path === '../include/linux/stringify.h'),
    'the last header of the list',
  );
  const piggy = parseCmdFile(await readFile(join(cmdFixtures, 'arch/x86/boot/compressed/.piggy.o.cmd'), 'utf8'))!;
  t.equal(piggy.source, 'arch/x86/boot/compressed/piggy.S');
  t.equal(piggy.deps.length, 7);
  t.equal(
    parseCmdFile(await readFile(join(cmdFixtures, 'fs/ext4/.built-in.a.cmd'), 'utf8')),
    undefined,
    'an archive compiles nothing',
  );
});

/** An object dir inside a source tree, as qcrash lays them out, holding the fixtures' objects, all up to date. */
async function objDir(name: string): Promise<string> {
  const src = tmp.join(name);
  const obj = join(src, 'qcrash-obj');
  await cp(cmdFixtures, obj, { recursive: true });
  await symlink('..', join(obj, 'source')); // kbuild's link back to the tree: must not be walked
  const old = new Date('2026-01-01T00:00:00Z');
  const built = new Date('2026-01-02T00:00:00Z');
  for (const f of ['lib/.ctype.o.cmd', 'arch/x86/boot/compressed/.piggy.o.cmd']) {
    const c = parseCmdFile(await readFile(join(obj, f), 'utf8'))!;
    for (const d of [c.source, ...c.deps.filter((x) => !x.optional).map((x) => x.path)]) {
      await mkdir(dirname(join(obj, d)), { recursive: true });
      await writeFile(join(obj, d), '');
      await utimes(join(obj, d), old, old);
    }
    await writeFile(join(obj, c.target), '');
    await utimes(join(obj, c.target), built, built);
  }
  return obj;
}

async function touch(p: string, when = new Date('2026-01-03T00:00:00Z')) {
  await mkdir(dirname(p), { recursive: true });
  await writeFile(p, '');
  await utimes(p, when, when);
}

t.test('staleObjects: what make will compile again, by the .cmd files', async (t) => {
  const obj = await objDir('stale');
  t.same(await staleObjects(obj), { stale: [], objects: 2 }, 'all up to date; the archive is not an object');
  await touch(join(obj, '../lib/ctype.c'));
  t.same((await staleObjects(obj)).stale, ['lib/ctype.o'], 'its source changed');
  await touch(join(obj, 'lib/ctype.o'), new Date('2026-01-04T00:00:00Z'));
  await touch(join(obj, 'include/config/KCSAN'));
  t.same((await staleObjects(obj)).stale, [], 'a config option file older than the object');
  await touch(join(obj, 'include/config/FOO'), new Date('2026-01-05T00:00:00Z'));
  t.same(
    (await staleObjects(obj)).stale,
    ['arch/x86/boot/compressed/piggy.o', 'lib/ctype.o'],
    'an option both depend on changed',
  );
  await touch(join(obj, 'lib/ctype.o'), new Date('2026-01-06T00:00:00Z'));
  await touch(join(obj, 'arch/x86/boot/compressed/piggy.o'), new Date('2026-01-06T00:00:00Z'));
  await touch(join(obj, 'tools/objtool/objtool'), new Date('2026-01-07T00:00:00Z'));
  t.same((await staleObjects(obj)).stale, ['lib/ctype.o'], 'objtool was relinked: the objects it checks');
  await rm(join(obj, 'tools'), { recursive: true });
  await rm(join(obj, 'arch/x86/boot/compressed/piggy.S'));
  t.same((await staleObjects(obj)).stale, ['arch/x86/boot/compressed/piggy.o'], 'a source that is gone');
  await rm(join(obj, 'lib/ctype.o'));
  t.same((await staleObjects(obj)).stale, ['arch/x86/boot/compressed/piggy.o', 'lib/ctype.o'], 'an object that is gone');
});

t.test('estimateBuild: the earlier build here, else the recorded count, else make -n', async (t) => {
  const obj = await objDir('estimate');
  let dryRuns = 0;
  const dryRun = async () => (dryRuns++, { planned: 873, builtNow: 22 });
  const first = await estimateBuild({ objDir: obj, configHash: 'c0ffee', hadBuild: false, dryRun });
  t.same(first.estimate, { objects: 873 + dryRunMisses, source: `make -n lists 873, + ${dryRunMisses} it cannot see` });
  t.equal(first.builtByDryRun, 22);
  t.equal(dryRuns, 1);

  await recordBuildStats('c0ffee', { fullBuildObjects: 937 });
  const recorded = await estimateBuild({ objDir: obj, configHash: 'c0ffee', hadBuild: false, dryRun });
  t.same(recorded.estimate, { objects: 935, source: 'an earlier build of this config, less 2 already built' });
  t.equal(dryRuns, 1, 'no dry run when the count is known');

  t.same((await estimateBuild({ objDir: obj, configHash: 'c0ffee', hadBuild: true, dryRun })).estimate, {
    objects: 0,
    source: '0 changed since the last build here',
  });
  await touch(join(obj, '../lib/ctype.c'));
  const incremental = await estimateBuild({ objDir: obj, configHash: 'c0ffee', hadBuild: true, dryRun });
  t.same(incremental, {
    estimate: {
      objects: 1 + defaultRelinkObjects,
      source: `1 changed since the last build here + ${defaultRelinkObjects} relinking`,
    },
    stale: 1,
  });
  await recordBuildStats('c0ffee', { relinkObjects: 3 });
  t.equal(
    (await estimateBuild({ objDir: obj, configHash: 'c0ffee', hadBuild: true, dryRun })).estimate!.objects,
    4,
    'relinking as an earlier incremental build did it',
  );
  t.match(
    await readBuildStats('c0ffee'),
    { configHash: 'c0ffee', fullBuildObjects: 937, relinkObjects: 3 },
    'one record keeps both',
  );
  t.equal(dryRuns, 1);
});

t.test('dryRunCompileCount counts the listed steps and the ones a sub-make really ran', async (t) => {
  // kbuild's shapes: quiet echoes inside commands, and a sub-make that drops -n (tools/ does that for objtool).
  const dir = tmp.join('dry');
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'Makefile'),
    [
      'all: a.o b.o sub',
      "a.o:\n\t@set -e; echo '  CC      a.o'; touch a.o",
      "b.o:\n\t@set -e; echo '  AS      b.o'; echo '  AR      b.a'; touch b.o",
      'sub:\n\t$(MAKE) MAKEFLAGS= -f Sub.mk',
      '',
    ].join('\n'),
  );
  // Like tools/Makefile: the sub-make's MAKEFLAGS (without n) is what the make below it gets.
  await writeFile(join(dir, 'Sub.mk'), 'all:\n\t$(MAKE) -f Objtool.mk\n');
  await writeFile(join(dir, 'Objtool.mk'), "all:\n\t@echo '  CC      /abs/tools/objtool/check.o'\n");
  const r = await dryRunCompileCount('make', ['-C', dir], { env: {}, objDir: dir });
  t.same(r, { planned: 2, builtNow: 1 });
  await t.rejects(readFile(join(dir, 'a.o')), 'nothing of the dry run was built');
});
