import t, { type Test } from 'tap';
import { copyFileSync, openSync, closeSync, readFileSync, truncateSync, statSync } from 'node:fs';
import { runOk, run } from '../../harness/util/exec.ts';
import { tool } from '../../harness/util/tools.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { sha256File } from '../../harness/util/hash.ts';
import { damagedCopy } from '../helpers/damaged-copy.ts';
import { readUndoFile, applyUndo, UndoFileError, undoFileRanges } from '../../harness/image/undo-file.ts';
import { crc32cLe } from '../../harness/util/crc32c.ts';

// The in-process undo (what the write-log's in-place checks use instead of
// an e2undo per state) against undo files written by the real e2fsprogs,
// and against the real e2undo's result on the same file.
const tmp = await TempDir.create('undo-file-test');
t.teardown(() => tmp.remove());

/** An image e2fsck must repair: a fresh ext4 whose superblock's free counts are wrong. */
async function damagedImage(path: string, blockSize: number): Promise<void> {
  await runOk(await tool('mkfs.ext4'), ['-q', '-F', '-b', String(blockSize), '-N', '512', path, '8M']);
  await runOk(await tool('debugfs'), ['-w', '-R', 'ssv free_blocks_count 17', path]);
  await runOk(await tool('debugfs'), ['-w', '-R', 'ssv free_inodes_count 3', path]);
}

async function undoneEqualsOriginal(t: Test, name: string, write: (image: string, undo: string) => Promise<void>) {
  const original = tmp.join(`${name}-original.img`);
  await damagedImage(original, 1024);
  const ours = tmp.join(`${name}-ours.img`);
  const theirs = tmp.join(`${name}-theirs.img`);
  const undo = tmp.join(`${name}.undo`);
  copyFileSync(original, ours);
  await write(ours, undo);
  t.not(await sha256File(ours), await sha256File(original), 'the program changed the image');
  copyFileSync(ours, theirs);
  const u = readUndoFile(undo);
  const fd = openSync(ours, 'r+');
  try {
    applyUndo(u, fd);
  } finally {
    closeSync(fd);
  }
  await runOk(await tool('e2undo'), [undo, theirs]);
  t.equal(await sha256File(ours), await sha256File(original), 'put back byte for byte');
  t.equal(await sha256File(theirs), await sha256File(original), 'the real e2undo agrees');
  return { undo, u, original };
}

t.test('crc32c as e2fsprogs computes it (seed ~0, no final inversion)', async (t) => {
  // The standard check value of CRC-32C for "123456789" is 0xe3069283, after the final inversion.
  t.equal((~crc32cLe(Buffer.from('123456789')) >>> 0).toString(16), 'e3069283');
  t.equal(crc32cLe(Buffer.alloc(0)), 0xffffffff);
});

t.test('e2fsck -fy -z: our undo puts the image back as e2undo does', async (t) => {
  const { u } = await undoneEqualsOriginal(t, 'fsck', async (image, undo) => {
    const r = await run(await tool('e2fsck'), ['-fy', '-z', undo, image], { env: { LANG: 'C' } });
    t.equal(r.exitCode, 1, `e2fsck repaired (exit 1):\n${r.stdout}`);
  });
  t.ok(u.extents.length >= 1, `${u.extents.length} saved extents`);
  t.equal(u.fsBlockSize, 1024);
});

t.test('mke2fs -z over the image: keys that each cover a run of blocks', async (t) => {
  // (An undo block here is 32 KiB, 2047 keys to a key block: no real run of
  // ours writes more than one key block, so the key-block loop runs once.)
  const { u } = await undoneEqualsOriginal(t, 'mkfs', async (image, undo) => {
    await runOk(await tool('mkfs.ext4'), ['-q', '-F', '-b', '1024', '-N', '2048', '-z', undo, image]);
  });
  t.ok(u.extents.length > 1, `${u.extents.length} keys`);
  t.ok(
    u.extents.some((x) => x.bytes.length > u.fsBlockSize),
    `a key spans several fs blocks (largest ${Math.max(...u.extents.map((x) => x.bytes.length))} bytes)`,
  );
});

t.test('a damaged undo file is refused whole, and says where', async (t) => {
  const original = tmp.join('bad-original.img');
  await damagedImage(original, 1024);
  const image = tmp.join('bad.img');
  const undo = tmp.join('bad.undo');
  copyFileSync(original, image);
  await run(await tool('e2fsck'), ['-fy', '-z', undo, image]);
  const good = readUndoFile(undo);
  const damaged = (name: string, at: number, bytes: Buffer) => damagedCopy(undo, tmp.join(name), at, bytes);
  t.throws(() => readUndoFile(damaged('magic.undo', 0, Buffer.from('E2UNDO99'))), /magic "E2UNDO99", expected "E2UNDO02"/);
  t.throws(() => readUndoFile(damaged('hdr.undo', 8, Buffer.from([0x7f]))), /header checksum/);
  // The last byte of the file lies in the last saved extent's data.
  const size = statSync(undo).size;
  const last = readFileSync(undo).subarray(size - 1)[0]!;
  const dataError = (() => {
    try {
      readUndoFile(damaged('data.undo', size - 1, Buffer.from([last ^ 0xff])));
    } catch (e) {
      return e;
    }
  })();
  t.ok(dataError instanceof UndoFileError, 'a typed error that keeps the file');
  t.match((dataError as UndoFileError).message, /saved bytes of fs block \d+ with a checksum that does not match/);
  t.equal((dataError as UndoFileError).file, tmp.join('data.undo'));
  const cut = tmp.join('cut.undo');
  copyFileSync(undo, cut);
  truncateSync(cut, size - good.blockSize);
  t.throws(() => readUndoFile(cut), /the file ends at byte \d+ inside the data of fs block/);
  t.throws(() => readUndoFile(tmp.join('missing.undo')), /ENOENT/);
});

t.test('undoFileRanges: where the program wrote, from the key blocks alone', async (t) => {
  const { undo, u } = await undoneEqualsOriginal(t, 'ranges', async (image, undo) => {
    await runOk(await tool('mkfs.ext4'), ['-q', '-F', '-b', '1024', '-N', '2048', '-z', undo, image]);
  });
  t.same(
    [...(undoFileRanges(undo) ?? [])].sort((a, b) => a[0] - b[0]),
    u.extents.map((x) => [u.fsOffset + x.fsBlock * u.fsBlockSize, x.bytes.length]),
    'the same ranges readUndoFile puts back',
  );
  t.same(undoFileRanges(tmp.join('never-written.undo')), [], 'no file: the program wrote nothing');
  t.equal(
    undoFileRanges(damagedCopy(undo, tmp.join('ranges-bad.undo'), 8, Buffer.from([0x7f]))),
    undefined,
    'a damaged header: unknown',
  );
});
