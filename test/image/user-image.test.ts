import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runOk } from '../../harness/util/exec.ts';
import { openUserImage, readImageManifest, inspectImage } from '../../harness/image/user-image.ts';
import { loadScenario } from '../../harness/run/resolve-scenario.ts';
import { cacheDir } from '../../harness/util/paths.ts';
import type { FileReport } from '../../harness/results/file-report.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import { qcrash } from '../helpers/cli.ts';
import { qemuPids } from '../helpers/env.ts';
import { makeUserImage, sparseBytes, sparseFile, userImageFiles } from './user-image-fixture.ts';

// A user's own filesystem (issue 14, item 3): an image made outside qcrash
// (mkfs -O ^extent, files written with debugfs, tune2fs -O extent) is read
// with debugfs, run through the built-in set on overlays, reported per file,
// and never written; bad images are exit 2 with what to do.
const dir = await mkdtemp(join(tmpdir(), 'user-image-'));
const tmp = join(dir, 'tmp');
await mkdir(tmp);
t.teardown(() => rm(dir, { recursive: true, force: true }));
const env = { QCRASH_TMPDIR: tmp };

const image = await makeUserImage(dir, 'user');
const sha = async (f: string) =>
  createHash('sha256')
    .update(await readFile(f))
    .digest('hex');
const before = { sha: await sha(image), mtimeMs: (await stat(image)).mtimeMs };

/** Nothing left behind: no temp dir of ours, no QEMU. */
async function clean(t: Test) {
  t.same(
    (await readdir(tmp)).filter((f) => f.startsWith('qcrash-')),
    [],
    'no temp dir left',
  );
  t.same(qemuPids(tmp), [], 'no QEMU left');
}

t.test('the manifest is what the image holds, read with debugfs', async (t) => {
  const sb = await inspectImage(image);
  t.equal(sb.blockSize, 1024);
  t.ok(sb.features.includes('extent') && sb.features.includes('has_journal'));
  const m = await readImageManifest(image, sb, 'test');
  const byPath = new Map(m.entries.map((e) => [e.path, e]));
  const expected = [
    '/',
    '/data',
    '/data/with space',
    '/lost+found',
    '/data/link',
    '/data/ind-hardlink',
    sparseFile.path,
    ...Object.keys(userImageFiles),
  ];
  t.same([...byPath.keys()].sort(), expected.sort(), 'every file, directory and symlink, names with spaces and quotes too');
  for (const [p, b] of Object.entries(userImageFiles)) {
    const e = byPath.get(p)!;
    t.equal(e.size, b.length, `${p}: size`);
    t.equal(e.sha256, createHash('sha256').update(b).digest('hex'), `${p}: sha256 of the bytes written in`);
    t.ok(['blocks', 'none'].includes(e.mapping), `${p}: block-mapped (${e.mapping})`);
  }
  t.equal(
    byPath.get(sparseFile.path)!.sha256,
    createHash('sha256').update(sparseBytes()).digest('hex'),
    'the sparse file reads back with its hole',
  );
  t.same(
    byPath.get(sparseFile.path)!.blockMap!.data.map(([l, , n]) => [l, n]),
    [
      [0, 4],
      [200, 8],
    ],
    'and only its data blocks are mapped',
  );
  t.same(
    byPath.get('/data/dind')!.blockMap!.index.map(([k]) => k),
    ['IND', 'DIND', 'IND'],
    'the double-indirect file has its map blocks recorded',
  );
  t.equal(byPath.get('/data/ind-hardlink')!.ino, byPath.get('/data/ind')!.ino, 'a hard link is its inode under another name');
  t.equal(byPath.get('/data/link')!.mapping, 'fast-symlink');
});

t.test('a scenario names its image relative to itself; its paths are checked against the image at their line', async (t) => {
  await writeFile(
    join(dir, 'mine.yaml'),
    'image: user.img\nsteps:\n  - mount\n  - migrate: ["/data/with space/q\\"uote", /frozen]\nkill: [none]\n',
  );
  const s = await loadScenario(join(dir, 'mine.yaml'));
  t.equal(s.image, image);
  t.equal(s.recipe, undefined);
  t.same((s.steps[1] as { paths: string[] }).paths, ['/data/with space/q"uote', '/frozen']);

  await writeFile(join(dir, 'typo.yaml'), 'image: user.img\nsteps:\n  - mount\n  - migrate: /data/dindd\nkill: [none]\n');
  await t.rejects(loadScenario(join(dir, 'typo.yaml')), {
    message: /typo\.yaml:4: migrate: "\/data\/dindd" is not in the filesystem of .*user\.img \(close: .*\/data\/dind/,
  });
  await writeFile(join(dir, 'gone.yaml'), 'steps: [mount]\nkill: [none]\nimage: nowhere.img\n');
  await t.rejects(loadScenario(join(dir, 'gone.yaml')), { message: /gone\.yaml:3: image file nowhere\.img not found/ });
  await writeFile(join(dir, 'both.yaml'), 'recipe: small-4k\nimage: user.img\nsteps: [mount]\nkill: [none]\n');
  await t.rejects(loadScenario(join(dir, 'both.yaml')), { message: /both\.yaml:2: .*not both/ });
  await writeFile(join(dir, 'neither.yaml'), 'steps: [mount]\nkill: [none]\n');
  await t.rejects(loadScenario(join(dir, 'neither.yaml')), {
    message: /neither\.yaml:1: .*"recipe: NAME".*"image: FILE\.img".*--image/,
  });
  const over = await loadScenario(join(dir, 'neither.yaml'), { image });
  t.equal(over.image, image, '--image gives a scenario its filesystem');
  t.ok((await openUserImage(image)).caseDisk === 'qcow2', 'cases run on overlays of it');
});

t.test('bad images are exit 2 before anything boots, each saying what to do', async (t) => {
  const noExtent = await makeUserImage(dir, 'no-extent', { extent: false });
  const noJournal = await makeUserImage(dir, 'no-journal', { journal: false });
  const junk = join(dir, 'junk.img');
  await writeFile(junk, createHash('sha512').update('junk').digest().toString('hex').repeat(4096));
  const qcow = join(dir, 'user.qcow2');
  await runOk('qemu-img', ['convert', '-O', 'qcow2', image, qcow]);
  // A filesystem made with extents from the start: nothing for chattr +e to do.
  const extents = join(dir, 'extents.img');
  await runOk('mkfs.ext4', ['-q', '-F', '-b', '1024', extents, '16M'], { env: { MKE2FS_CONFIG: '/etc/mke2fs.conf' } });
  const cases: Array<[string, string, RegExp]> = [
    ['a missing file', join(dir, 'missing.img'), /--image .*missing\.img: no such file/],
    ['a directory', dir, /is a directory: give the filesystem image file/],
    ['not ext*', junk, /not an ext2\/ext3\/ext4 filesystem \(Bad magic number in super-block\)/],
    ['a qcow2 image', qcow, /a qcow2 image, not a raw filesystem image: convert it with `qemu-img convert -O raw /],
    [
      'no extent feature',
      noExtent,
      /the extent feature is off, and chattr \+e needs it: turn it on with `tune2fs -O extent .*no-extent\.img`/,
    ],
    ['no journal', noJournal, /it has no journal .*: add one with `tune2fs -j .*no-journal\.img`/],
    ['nothing block-mapped', extents, /nothing in it is block-mapped .*: there is nothing for chattr \+e to migrate/],
  ];
  for (const [what, path, message] of cases) {
    const out = join(dir, `out-${what.replace(/\W+/g, '-')}`);
    const r = await qcrash(['run', '--image', path, '--out', out], { env });
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr, message, what);
    t.notOk(
      await stat(join(out, 'run.json')).then(
        () => true,
        () => false,
      ),
      `${what}: no run folder started`,
    );
  }
  await clean(t);
});

t.test('qcrash run --image: the built-in set on the image, per-file results, the image untouched', async (t) => {
  const out = join(dir, 'run');
  // --keep all: every case's crash image is kept (compressed), to show each overlay was flattened and removed.
  const r = await qcrash(['run', '--image', image, '--recovery', 'e2fsck', '--jobs', '2', '--keep', 'all', '--out', out], {
    env,
  });
  t.equal(r.code, 0, `exit 0\n${r.stderr.slice(-3000)}`);
  t.equal(await sha(image), before.sha, 'the image is byte-identical afterwards');
  t.equal((await stat(image)).mtimeMs, before.mtimeMs, 'and was not even opened for writing');

  const suite = await readFile(join(out, 'image-suite.yaml'), 'utf8');
  t.match(suite, `image: ${JSON.stringify(image)}`, 'the built-in set is a scenario file naming the image, kept with the run');
  const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as RunSummary;
  const labels = summary.cases.map((c) => c.pointLabel).sort();
  t.same(
    labels,
    [
      'after-migrate',
      'after-sync',
      'before-migrate',
      'commit-sync-1',
      'during-migrate-100ms',
      'kernel-migrate-ext4_ext_migrate-hit1',
      'kernel-migrate-ext4_ext_migrate-hit6',
      'kernel-migrate-free_dind_blocks-hit1',
      'kernel-migrate-update_dind_extent_range-hit1',
      'kernel-migrate-update_ind_extent_range-hit1',
      'no-kill',
    ],
    'no crash, step markers, a seeded time, kernel points (hits counted from the 11 block-mapped inodes) and a commit end',
  );
  t.same(
    summary.cases.filter((c) => c.status !== 'pass').map((c) => `${c.id}: ${c.status} ${c.error ?? ''}`),
    [],
    'every case passed',
  );
  t.equal(summary.scenarios[0]!.image, image);
  for (const c of summary.cases) {
    const files = await readdir(c.dir);
    t.ok(
      files.includes('crash.qcow2') && !files.includes('disk.qcow2'),
      `${c.id}: the overlay was flattened into the crash image (kept as crash.qcow2) and removed`,
    );
  }

  const [report] = JSON.parse(await readFile(join(out, 'files.json'), 'utf8')) as FileReport[];
  const row = (p: string) => report!.rows.find((x) => x.path === p)!;
  t.equal(report!.reference, `${summary.cases[0]!.scenario}/no-kill/r1`, 'the ioctl results of the run without a crash');
  for (const p of [
    '/',
    '/data',
    '/data/with space',
    '/lost+found',
    '/data/direct',
    '/data/ind',
    '/data/ind-hardlink',
    '/data/dind',
    '/data/empty',
    sparseFile.path,
    '/data/with space/q"uote',
  ]) {
    t.equal(row(p).ioctl, 'migrated', `${p}: migrated`);
    t.same(
      row(p).noCrash,
      { bytes: true, blocks: true, mapping: true, codes: [] },
      `${p}: bytes, blocks and extent mapping survived`,
    );
    t.same(row(p).damaged, [], `${p}: no crash damaged it`);
  }
  t.equal(row('/frozen').ioctl, 'refused', 'the immutable file was refused');
  t.equal(row('/frozen').why, 'EPERM (1)', 'with the errno the kernel gave');
  t.same(
    row('/frozen').noCrash,
    { bytes: true, blocks: true, mapping: true, codes: [] },
    'and is still block-mapped with its bytes',
  );
  t.equal(row('/data/link').ioctl, 'skipped', 'a symlink is skipped as chattr -R skips it');
  t.equal(report!.crashCases, 10);

  const text = await readFile(join(out, 'files.txt'), 'utf8');
  t.match(text, /^\/frozen: refused EPERM \(1\); bytes ok, blocks ok, still block-mapped; survived 10 crash cases$/m);
  t.match(text, /^\/data\/dind: migrated; bytes ok, blocks ok, extents; survived 10 crash cases$/m);
  t.match(r.stdout, /Files of .*user\.img[\s\S]*ioctl: +11 migrated, 1 refused, 1 skipped/, 'the report on stdout says it too');
  const html = await readFile(join(out, 'report.html'), 'utf8');
  t.match(html, /<section id="files">[\s\S]*data-path="\/frozen" data-ioctl="refused"/, 'and the HTML report has a row per file');
  await clean(t);
});

t.test('a user image is never copied into the cache: only what qcrash read from it is', async (t) => {
  const base = await openUserImage(image);
  t.equal(base.path, image, 'cases use it where it is');
  t.ok(base.manifest.entries.length > 10);
  t.ok(base.digest && base.recipeHash.startsWith('image-'), 'keyed by its content');
  t.same(
    (await readdir(cacheDir('user-images', base.recipeHash.slice('image-'.length)))).sort(),
    ['checksums.json', 'manifest.json'],
    'the cache holds its sealed manifest, not a copy of it',
  );
  await t.rejects(openUserImage(join(dir, 'missing.img')), { exitCode: 2, message: 'no such file' });
});
