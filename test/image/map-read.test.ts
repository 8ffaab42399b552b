import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { copyImage } from '../../harness/image/disk.ts';
import { readEntryState, statPaths } from '../../harness/image/debugfs.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { unwrittenExtentImage } from '../helpers/unwritten-extent.ts';

// The content oracle reads file bytes through the block map debugfs prints
// (readEntryState via 'map'); manifests are made with debugfs's own dump.
// On real images, block-mapped and extent-mapped, with holes, indirect
// trees, fragmented files, extent tree blocks and unwritten extents, both
// must give every file the same size, hash and bytes.
const tmp = await TempDir.create('map-read-test');
t.teardown(() => tmp.remove());

/** debugfs's dump and the map read agree: hashes where bytes are not kept, bytes where they are (a kept file is not hashed). */
async function same(t: Test, image: string, paths: string[]) {
  const keepBytes = new Set(paths);
  const dumped = await readEntryState(image, paths, undefined, { keepBytes });
  const hashed = await readEntryState(image, paths, undefined, { via: 'map' });
  const kept = await readEntryState(image, paths, undefined, { keepBytes, via: 'map' });
  t.equal(hashed.length, dumped.length);
  t.equal(kept.length, dumped.length);
  let regular = 0;
  for (const [i, d] of dumped.entries()) {
    const m = hashed[i]!;
    t.equal(m.path, d.path);
    t.equal(m.exists, d.exists, `${d.path} exists in both or neither`);
    t.equal(m.size, d.size, `${d.path} size`);
    t.equal(m.sha256, d.sha256, `${d.path} sha256`);
    if (d.bytes) {
      regular++;
      const k = kept[i]!;
      t.ok(k.bytes && k.bytes.equals(d.bytes), `${d.path} bytes`);
      t.equal(k.sha256, undefined, `${d.path}: kept, so not hashed`);
    }
  }
  return regular;
}

for (const name of ['shapes-4k', 'shapes-1k', 'fragmented-4k']) {
  t.test(`${name}: block-mapped, then converted to extents by e2fsck`, async (t) => {
    const base = await buildImage(await loadRecipe(name));
    const paths = [...base.manifest.entries.map((e) => e.path), '/no-such-file'];
    const img = tmp.join(`${name}.img`);
    await copyImage(base.path, img);
    const regular = await same(t, img, paths);
    t.ok(regular >= 3, `${regular} regular files compared`);
    // e2fsck -E bmap2extent rewrites every block map as an extent tree (the
    // large fragmented files get extent tree blocks), data in place.
    execFileSync('e2fsck', ['-fy', '-E', 'bmap2extent', img], { stdio: 'ignore' });
    const stats = await statPaths(
      img,
      base.manifest.entries.filter((e) => e.type === 'file').map((e) => e.path),
    );
    t.ok(
      [...stats.values()].some((s) => s?.mapping === 'extents'),
      'files are extent-mapped now',
    );
    await same(t, img, paths);
  });
}

t.test('unwritten extents and blocks past i_size read as debugfs reads them', async (t) => {
  const img = tmp.join('unwritten.img');
  // Unwritten extents past the data of a file, and a size that ends inside them.
  const file = await unwrittenExtentImage(img);
  const [st] = [...(await statPaths(img, [file.path])).values()];
  t.match(st?.map, /\[u\]/, `the map has an unwritten extent: ${st?.map}`);
  await same(t, img, [file.path]);
});

// With the base image given, a file whose map, size and blocks are the
// base's gets the manifest's sha256 without being hashed: every state must
// read exactly as it reads without the base (hashing every file).
t.test('files left as on the base: compared with it, and the same sizes and hashes as hashing them', async (t) => {
  for (const name of ['shapes-1k', 'fragmented-4k']) {
    const base = await buildImage(await loadRecipe(name));
    const entries = new Map(base.manifest.entries.map((e) => [e.path, e]));
    const paths = [...entries.keys(), '/no-such-file'];
    const files = base.manifest.entries.filter((e) => e.type === 'file' && e.size >= 8192 && e.blockMap?.data.length);
    t.ok(files.length >= 2, `${name}: ${files.length} files with data`);
    const check = async (img: string, what: string, withEntries = entries) => {
      const hashed = await readEntryState(img, paths, undefined, { via: 'map' });
      const compared = await readEntryState(img, paths, undefined, {
        via: 'map',
        base: { path: base.path, entries: withEntries },
      });
      t.same(
        compared.map((s) => [s.path, s.exists, s.size, s.sha256]),
        hashed.map((s) => [s.path, s.exists, s.size, s.sha256]),
        `${name}, ${what}: the same as hashing every file`,
      );
      return compared;
    };
    const img = tmp.join(`${name}-vs-base.img`);
    await copyImage(base.path, img);
    const plain = await check(img, 'a copy of the base');
    for (const e of files) t.equal(plain.find((s) => s.path === e.path)?.sha256, e.sha256, `${e.path}: the manifest's hash`);
    // A block in the middle of a file overwritten: its bytes are not the base's any more.
    const victim = files[1]!;
    const [, p] = victim.blockMap!.data.at(-1)!;
    execFileSync(
      'dd',
      ['if=/dev/urandom', `of=${img}`, `bs=${base.manifest.blockSize}`, `seek=${p}`, 'count=1', 'conv=notrunc'],
      {
        stdio: 'ignore',
      },
    );
    const changed = await check(img, 'one block of a file overwritten');
    t.not(changed.find((s) => s.path === victim.path)?.sha256, victim.sha256, `${victim.path}: not the manifest's hash`);
    // A manifest whose hash is not the base's bytes: the file is hashed, never given that hash.
    const wrong = new Map(entries);
    wrong.set(files[0]!.path, { ...files[0]!, sha256: '0'.repeat(64) });
    const told = await check(img, "a manifest hash that is not the base's", wrong);
    t.equal(told.find((s) => s.path === files[0]!.path)?.sha256, files[0]!.sha256);
    // Converted to extents (data in place, so the same runs): still compared, still the same.
    execFileSync('e2fsck', ['-fy', '-E', 'bmap2extent', img], { stdio: 'ignore' });
    await check(img, 'after bmap2extent');
  }
});
