import t from 'tap';
import { WriteLog } from '../../harness/crash/writelog/format.ts';
import { staticRole } from '../../harness/crash/writelog/explain.ts';
import { parseDumpe2fs } from '../../harness/image/geometry.ts';
import { parseBlockMap } from '../../harness/image/block-map.ts';
import { parseIcheck, parseNcheck } from '../../harness/image/debugfs.ts';
import { parseJournalSuperblock, parseJournalBlock } from '../../harness/image/jbd2.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { fixtureLog, fixtureText } from './fixture.ts';

// The parsers explain.ts relies on, on output captured from real dumpe2fs and
// debugfs runs, and on jbd2 blocks from the recorded log (test/fixtures/writelog/README.md).

t.test('dumpe2fs: one 4 KiB group', async (t) => {
  const l = parseDumpe2fs(fixtureText('dumpe2fs-small-4k.txt'));
  t.match(l, {
    blockSize: 4096,
    blocksCount: 8192,
    firstDataBlock: 0,
    blocksPerGroup: 32768,
    inodesPerGroup: 8192,
    inodeSize: 128,
    journalInode: 8,
  });
  t.same(l.groups, [
    {
      index: 0,
      first: 0,
      last: 8191,
      superblock: 0,
      gdt: [1, 1],
      reservedGdt: [2, 2],
      blockBitmap: 3,
      inodeBitmap: 19,
      inodeTable: [35, 290],
      metadata: [
        { what: "group 0's primary superblock", first: 0, last: 0 },
        { what: "group 0's group descriptors", first: 1, last: 1 },
        { what: "group 0's reserved GDT blocks", first: 2, last: 2 },
        { what: "group 0's block bitmap", first: 3, last: 3 },
        { what: "group 0's inode bitmap", first: 19, last: 19 },
        { what: "group 0's inode table", first: 35, last: 290 },
      ],
    },
  ]);
  t.match(staticRole(l, 0), { kind: 'superblock', text: 'primary superblock (group 0)' });
  t.match(staticRole(l, 1), { kind: 'group-descriptors' });
  t.match(staticRole(l, 2), { kind: 'reserved-gdt' });
  t.match(staticRole(l, 3), { kind: 'block-bitmap', text: 'block bitmap of group 0', group: 0 });
  t.match(staticRole(l, 19), { kind: 'inode-bitmap', group: 0 });
  t.match(staticRole(l, 35), { kind: 'inode-table', inodes: [1, 32], text: 'inode table of group 0 (inodes 1-32)' });
  t.match(staticRole(l, 36), { inodes: [33, 64] });
  t.equal(staticRole(l, 1300), undefined, 'a block inodes may own has no fixed role');
});

t.test('dumpe2fs: 1 KiB blocks, several groups, flex_bg and backups', async (t) => {
  const l = parseDumpe2fs(fixtureText('dumpe2fs-dind-1k-trimmed.txt'));
  t.match(l, { blockSize: 1024, firstDataBlock: 1, blocksPerGroup: 8192, inodesPerGroup: 2048 });
  t.equal(l.groups.length, 6);
  t.match(l.groups[1], {
    first: 8193,
    last: 16384,
    superblock: 8193,
    gdt: [8194, 8194],
    blockBitmap: 195,
    inodeBitmap: 201,
    inodeTable: [462, 717],
  });
  t.notOk('superblock' in l.groups[2]!, 'sparse_super: group 2 has no backup');
  t.match(staticRole(l, 0), { kind: 'superblock', text: /boot block/ });
  t.match(staticRole(l, 1), { kind: 'superblock', text: /primary/ });
  t.match(staticRole(l, 195), { kind: 'block-bitmap', group: 1 }, "group 1's bitmap lives in group 0's range");
  t.match(staticRole(l, 462), { kind: 'inode-table', group: 1, inodes: [2049, 2056] });
  t.match(staticRole(l, 8193), { kind: 'superblock', text: 'backup superblock (group 1)' });
  t.match(staticRole(l, 8194), { kind: 'group-descriptors', text: /backup in group 1/ });
  const csum = parseDumpe2fs(fixtureText('dumpe2fs-shapes-1k-csum-trimmed.txt'));
  t.equal(csum.groups.length, 8);
  t.match(
    csum.groups[0],
    { blockBitmap: 258, inodeBitmap: 266, inodeTable: [274, 785] },
    'lines with ", csum 0x..." parse the same',
  );
  t.match(staticRole(csum, 275), { inodes: [5, 8] }, '256-byte inodes: 4 per 1 KiB block');
});

t.test('debugfs: block maps, icheck, ncheck', async (t) => {
  const journal = parseBlockMap(fixtureText('debugfs-stat-journal-small-4k.txt'));
  t.same(journal, {
    data: [
      [0, 9, 10],
      [10, 20, 2],
      [12, 23, 12],
      [24, 292, 1000],
    ],
    index: [['IND', 22]],
  });
  const ext = parseBlockMap(fixtureText('debugfs-stat-extents-etb.txt'));
  t.same(ext.index, [['ETB0', 1835]]);
  t.same(ext.data[0], [0, 1812, 1]);
  t.same(ext.data.at(-1), [1236, 6299, 1]);
  t.equal(ext.data.length, 32);
  t.equal(ext.unwritten, undefined);
  const ic = parseIcheck(fixtureText('debugfs-icheck.txt'));
  t.same(
    [...ic],
    [
      [9, 8],
      [35, undefined],
      [1300, 13],
      [1305, 20],
      [2330, undefined],
      [3, undefined],
      [5000, undefined],
    ],
  );
  const nc = parseNcheck(fixtureText('debugfs-ncheck.txt'));
  t.equal(nc.get(12), '/shapes', 'debugfs prints "//shapes": normalised');
  t.equal(nc.get(13), '/shapes/dind-first');
  t.equal(nc.get(15), '/shapes/ind-13');
});

t.test('jbd2 blocks from the recorded log: superblock, revoke, descriptor, commit', async (t) => {
  await using tmp = await TempDir.create('writelog-explain-test');
  await using log = await WriteLog.open(fixtureLog(tmp.join('real.log')));
  // The journal starts at fs block 9 (sector 72): its first write is the jbd2 superblock.
  const jsbWrite = log.entries.find((e) => e.sector === 72)!;
  const jsb = parseJournalSuperblock(await log.readData(jsbWrite))!;
  t.match(
    jsb,
    { blockSize: 4096, maxLen: 1024, first: 1, tagBytes: 8, csumTail: false, is64bit: false },
    'ext3 style: revoke only, 8-byte tags',
  );
  t.ok(jsb.sequence > 0);
  // Blocks 10-16 in one write: revoke, descriptor and the five journal copies of transaction 2.
  const journalWrite = log.entries.find((e) => e.sector === 80)!;
  const data = await log.readData(journalWrite);
  const block = (k: number) => data.subarray(k * 4096, (k + 1) * 4096);
  t.same(
    parseJournalBlock(block(0), jsb),
    { type: 'revoke', sequence: 2, revoked: [2331, 1305, 2330] },
    'the migration freed the old IND, DIND and IND blocks of dind-first',
  );
  t.same(
    parseJournalBlock(block(1), jsb),
    {
      type: 'descriptor',
      sequence: 2,
      tags: [
        { homeBlock: 0, flags: 0 },
        { homeBlock: 35, flags: 2 },
        { homeBlock: 19, flags: 2 },
        { homeBlock: 1, flags: 2 },
        { homeBlock: 3, flags: 10 },
      ],
    },
    'five tags: superblock, inode table, inode bitmap, GDT, block bitmap (SAME_UUID after the first, LAST_TAG on the last)',
  );
  t.equal(parseJournalBlock(block(2), jsb), undefined, 'a journal copy has no jbd2 header');
  const commit = log.entries.find((e) => e.sector === 136)!;
  t.same(parseJournalBlock(await log.readData(commit), jsb), { type: 'commit', sequence: 2 });
  t.equal(parseJournalSuperblock(block(1)), undefined, 'a descriptor is not a superblock');
});
