import t from 'tap';
import { copyFileSync, truncateSync, appendFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import {
  WriteLog,
  WriteLogFormatError,
  entryKind,
  isFlush,
  writeWriteLog,
  LogFlag,
} from '../../harness/crash/writelog/format.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { damagedCopy } from '../helpers/damaged-copy.ts';
import { fixtureAcks, fixtureLog } from './fixture.ts';

// The reader on a log recorded by a real run (QEMU 7.2 blklogwrites), and
// on copies of it damaged the ways a kill or a bad copy damages a log.
const tmp = await TempDir.create('writelog-format-test');
t.teardown(() => tmp.remove());
const real = fixtureLog(tmp.join('real.log'));

/** A copy of the fixture with `edit` applied to its bytes at `offset`. */
function damaged(name: string, offset: number, bytes: Buffer): string {
  return damagedCopy(real, tmp.join(name), offset, bytes);
}

function u64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}

t.test('a recorded log: every entry indexed, data read on demand', async (t) => {
  await using log = await WriteLog.open(real);
  t.equal(log.sectorSize, 512);
  t.equal(log.entries.length, 38);
  t.equal(log.superblockEntries, 38, 'the superblock counts every entry (log-super-update-interval=1)');
  t.equal(log.tornTail, false);
  t.equal(log.fileSize, 208384);
  t.equal(log.validBytes, log.fileSize, 'the entries cover the whole file');
  t.equal(log.flushCount, 13);
  const kinds = log.entries.map(entryKind);
  t.equal(kinds.filter((k) => k === 'write').length, 25);
  t.notOk(kinds.includes('discard') || kinds.includes('mark'), 'no discards (discard=off) and no marks');
  t.ok(
    log.entries.every((e) => e.flags === 0 || e.flags === LogFlag.flush),
    'QEMU logs plain writes and flushes only (no FUA from virtio-blk)',
  );
  t.ok(
    log.entries.filter(isFlush).every((e) => e.nrSectors === 0 && e.dataBytes === 0),
    'flushes carry no data',
  );
  const first = log.entries[0]!;
  t.same(
    [first.sector, first.nrSectors, first.offset, first.dataOffset],
    [0, 8, 512, 1024],
    'the mount writes the ext4 superblock first, logged right after the log superblock',
  );
  const data = await log.readData(first);
  t.equal(data.length, 4096);
  t.equal(data.readUInt16LE(1024 + 0x38), 0xef53, 'its data is an ext4 superblock (magic at 1024+0x38)');
  // The mount acknowledgement was taken at 5632 bytes: two entries (the superblock write and a flush).
  t.equal(log.positionAtBytes(fixtureAcks().acks[0]!.ackBytes), 2);
  t.equal(log.positionAtBytes(log.fileSize), 38);
  t.equal(log.positionAtBytes(512), 0);
});

t.test('a log cut inside an entry ends at that entry: a torn tail, not an error', async (t) => {
  await using whole = await WriteLog.open(real);
  const e = whole.entries.find((x) => x.index >= 20 && x.dataBytes > 0)!;
  for (const [what, at] of [
    ['its data', e.dataOffset + 100],
    ['its header', e.offset + 100],
  ] as const) {
    const p = tmp.join(`cut-${e.index}-${at}.log`);
    copyFileSync(real, p);
    truncateSync(p, at);
    await using log = await WriteLog.open(p);
    t.equal(log.tornTail, true, `cut inside ${what}`);
    t.equal(log.entries.length, e.index, 'the entries before it are all there');
    t.equal(log.torn!.index, e.index);
    t.equal(log.torn!.offset, e.offset);
    t.equal(log.superblockEntries, 38, 'the superblock still counts what was logged before the cut');
  }
  // A header slot reserved but never written (zeros) after the last entry, past the superblock's count.
  const p = tmp.join('blank-tail.log');
  copyFileSync(real, p);
  appendFileSync(p, Buffer.alloc(512 * 9));
  await using log = await WriteLog.open(p);
  t.equal(log.entries.length, 38);
  t.match(log.torn, { index: 38, reason: /blank entry header/ });
});

t.test('a damaged log is a WriteLogFormatError that says where and what', async (t) => {
  await using whole = await WriteLog.open(real);
  const mid = whole.entries[10]!;
  const cases: Array<[string, string, RegExp, Partial<WriteLogFormatError>]> = [
    ['bad magic', damaged('magic.log', 0, Buffer.from('notalog!')), /magic/, { offset: 0 }],
    ['bad version', damaged('version.log', 8, u64(7)), /version 7/, { offset: 8 }],
    [
      'unknown flags in the middle',
      damaged('flags.log', mid.offset + 16, u64(0x40)),
      /flags 0x40/,
      { offset: mid.offset + 16, entryIndex: 10 },
    ],
    [
      'a blank header before the superblock count',
      damaged('blank.log', mid.offset, Buffer.alloc(32)),
      /blank entry header/,
      { offset: mid.offset, entryIndex: 10 },
    ],
    [
      'garbage after a header',
      damaged('padding.log', mid.offset + 100, Buffer.from([1])),
      /non-zero bytes after the entry header/,
      { entryIndex: 10 },
    ],
    ['data_len on a write', damaged('datalen.log', mid.offset + 24, u64(5)), /data_len 5/, { entryIndex: 10 }],
  ];
  for (const [what, path, message, fields] of cases) {
    const err = await WriteLog.open(path).then(
      (l) => {
        void l.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    t.type(err, WriteLogFormatError, what);
    t.match(err, { message, ...fields }, what);
    t.match((err as Error).message, /record the workload again/, `${what}: says what to do`);
  }
});

t.test('an empty log (nothing written yet) has no entries; a file that is not a log is refused', async (t) => {
  const empty = tmp.join('empty.log');
  writeFileSync(empty, '');
  await using log = await WriteLog.open(empty);
  t.equal(log.entries.length, 0);
  t.equal(log.tornTail, false);
  const text = tmp.join('text.log');
  writeFileSync(text, 'hello, this is not a write log at all, just some text that is long enough\n'.repeat(10));
  await t.rejects(WriteLog.open(text), WriteLogFormatError);
});

t.test('writeWriteLog writes what the reader reads back', async (t) => {
  await using log = await WriteLog.open(real);
  const entries = await Promise.all(
    log.entries.map(async (e) => ({
      sector: e.sector,
      nrSectors: e.nrSectors,
      flags: e.flags,
      ...(e.dataBytes ? { data: await log.readData(e) } : {}),
    })),
  );
  const copy = tmp.join('copy.log');
  await writeWriteLog(copy, 512, entries);
  await using again = await WriteLog.open(copy);
  t.equal(again.entries.length, log.entries.length);
  t.equal(again.superblockEntries, log.entries.length);
  const digest = async (l: WriteLog) => {
    const h = createHash('sha256');
    for (const e of l.entries) h.update(`${e.sector}/${e.nrSectors}/${e.flags}/`).update(await l.readData(e));
    return h.digest('hex');
  };
  t.equal(await digest(again), await digest(log), 'same entries, same data');
});
