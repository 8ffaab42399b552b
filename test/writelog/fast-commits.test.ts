import t from 'tap';
import { parseFastCommitBlock } from '../../harness/crash/writelog/fast-commits.ts';
import { fastCommitArea, parseJournalSuperblock, JBD2_MAGIC } from '../../harness/image/jbd2.ts';

/** A fast-commit block as ext4 writes it: little-endian tag, length, value records, padded with zeros. */
function fcBlock(records: Array<[tag: number, value: Buffer]>, size = 1024): Buffer {
  const b = Buffer.alloc(size);
  let at = 0;
  for (const [tag, v] of records) {
    b.writeUInt16LE(tag, at);
    b.writeUInt16LE(v.length, at + 2);
    v.copy(b, at + 4);
    at += 4 + v.length;
  }
  return b;
}
const u32s = (...xs: number[]) => Buffer.concat(xs.map((x) => Buffer.from(Uint32Array.of(x).buffer)));

t.test('a fast commit: HEAD, INODE records, PAD, TAIL: one tail with its tid, the inodes logged', async (t) => {
  const b = fcBlock([
    [9, u32s(0, 7)],
    [6, Buffer.concat([u32s(13), Buffer.alloc(156)])],
    [1, u32s(13, 0, 0, 0)],
    [7, Buffer.alloc(20)],
    [8, u32s(7, 0xdeadbeef)],
    [6, Buffer.concat([u32s(240), Buffer.alloc(156)])],
    [8, u32s(7, 1)],
  ]);
  t.same(parseFastCommitBlock(b), { tails: [7, 7], inodes: [13, 240] });
});

t.test('zeros end the walk; a record running past the block is not read', async (t) => {
  t.same(parseFastCommitBlock(Buffer.alloc(1024)), { tails: [], inodes: [] });
  const b = fcBlock([[8, u32s(3, 0)]], 64);
  b.writeUInt16LE(8, 12);
  b.writeUInt16LE(200, 14);
  t.same(parseFastCommitBlock(b), { tails: [3], inodes: [] });
});

t.test('the fast-commit area is the last s_num_fc_blks journal blocks (256 when 0)', async (t) => {
  const jsb = Buffer.alloc(1024);
  jsb.writeUInt32BE(JBD2_MAGIC, 0);
  jsb.writeUInt32BE(4, 4);
  jsb.writeUInt32BE(4096, 0xc);
  jsb.writeUInt32BE(1040, 0x10);
  jsb.writeUInt32BE(1, 0x14);
  jsb.writeUInt32BE(16, 0x54);
  t.same(fastCommitArea(parseJournalSuperblock(jsb)!), [1024, 1040]);
  jsb.writeUInt32BE(0, 0x54);
  t.same(fastCommitArea(parseJournalSuperblock(jsb)!), [784, 1040]);
});
