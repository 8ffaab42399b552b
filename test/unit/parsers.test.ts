import t from 'tap';
import { readFile } from 'node:fs/promises';
import { parseProblemLog, iBlocksFromText, decodeExit } from '../../harness/image/e2fsck.ts';
import { classifyProblems } from '../../harness/checks/classify.ts';
import { scanConsole } from '../../harness/checks/console.ts';
import { parseDebugfsStat } from '../../harness/image/debugfs.ts';
import { SymbolTable } from '../../harness/vm/gdb/symbols.ts';
import { generatedBytes } from '../../harness/guest/content.ts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

// Parsers on output captured from real e2fsck, debugfs and kernel runs (test/fixtures/).
const fx = (p: string) => readFile(new URL(`../fixtures/${p}`, import.meta.url), 'utf8');

t.test('e2fsck problem log: codes and context attributes', async (t) => {
  const ps = parseProblemLog(await fx('checks/problem-log-links-freeb.xml'));
  const zero = ps.find((p) => p.code === 0x010004)!;
  t.equal(zero.codeHex, '0x010004');
  t.equal(zero.pass, 1);
  t.equal(zero.ino, 14);
  const plus = ps.find((p) => p.code === 0x050005)!;
  t.equal(plus.blk, 2345, "the '+' block");
  const range = ps.find((p) => p.code === 0x050014)!;
  t.same([range.blk, range.blk2], [2333, 2344], "the '-' range");
  t.same(parseProblemLog(''), [], 'an empty log is no problems');
});

t.test('e2fsck problem log: a clean run logs headers and no problem; a problem is found however it is laid out', async (t) => {
  // A real clean e2fsck -fn (pass headers, its invocation and filesystem): parsed without the XML parser.
  const clean = await fx('checks/problem-log-clean-fn.xml');
  t.match(clean, /<header code="0x050000"\/>/);
  t.same(parseProblemLog(clean), []);
  // The shortcut looks for a <problem> element, not for e2fsck's spacing of one.
  for (const [how, el] of [
    ['a newline after its name', '<problem\ncode="0x010004" answer="0" ino="13"/>'],
    ['a tab after its name', '<problem\tcode="0x010004" answer="0" ino="13"/>'],
  ] as const) {
    const ps = parseProblemLog(clean.replace('<header code="0x020000"/>', `${el}\n<header code="0x020000"/>`));
    t.same(
      ps.map((p) => [p.code, p.ino]),
      [[0x010004, 13]],
      how,
    );
  }
});

t.test('a torn checkpoint: an entry whose file type no longer matches its inode has its e2fsprogs name', async (t) => {
  // A real crash state (known-bugs/e2fsck-fc-stale-head-1k, a power-loss state inside the
  // checkpoint, after e2fsck reset the journal): /neighbours's directory block landed, the
  // inode table blocks of its new entries did not.
  const ps = parseProblemLog(await fx('checks/problem-log-torn-checkpoint.xml'));
  const f = classifyProblems(ps, await fx('checks/e2fsck-fn-torn-checkpoint.txt'), {
    manifestInodes: new Map(),
    migratedInodes: new Set(),
  });
  t.same(
    f.map((x) => x.name),
    ['PR_2_UNUSED_INODE', 'PR_2_BAD_FILETYPE', 'PR_2_UNUSED_INODE'],
  );
  t.ok(
    f.every((x) => x.class === 'corruption'),
    'corruption',
  );
});

t.test('a count e2fsck gives in ino/ino2 is reported as such, not the -1 it leaves in blk', async (t) => {
  // A real problem log (log-fast-commit, a power-loss state): PR_5_FREE_INODE_COUNT
  // carries the counts in ino/ino2 and blk="18446744073709551615".
  const ps = parseProblemLog(await fx('checks/problem-log-inode-count.xml'));
  const f = classifyProblems(ps, await fx('checks/e2fsck-fn-inode-count.txt'), {
    manifestInodes: new Map(),
    migratedInodes: new Set(),
  });
  const count = f.find((x) => x.code === '0x05000d');
  t.match(count?.message, /\(8155, counted=8153\)/, 'the inode counts');
  t.notMatch(count?.message, /1844674407370955/, 'not 2^64');
  const blocks = f.find((x) => x.code === '0x05000f');
  t.match(blocks?.message, /\(26000, counted=25986\) group 0/, 'a block count in blk/blk2 as before');
});

const fxGz = async (p: string) => gunzipSync(await readFile(new URL(`../fixtures/${p}`, import.meta.url))).toString('utf8');

t.test('multiply-claimed blocks: one finding per inode, not one per block', async (t) => {
  // A real crash state (planted bug 02, a power-loss state of validate/log-free-restart):
  // inodes 14 and 16 share 1596 blocks, and e2fsck logs every block of each.
  const ps = parseProblemLog(await fxGz('checks/problem-log-dup-blocks.xml.gz'));
  t.equal(ps.filter((p) => p.code === 0x011002).length, 3192, 'e2fsck reports 3192 multiply-claimed blocks');
  const f = classifyProblems(ps, await fxGz('checks/e2fsck-fn-dup-blocks.txt.gz'), {
    manifestInodes: new Map([[16, '/big/dind']]),
    migratedInodes: new Set([16]),
  });
  const dup = f.filter((x) => x.code === '0x011002');
  t.same(
    dup.map((x) => x.ino),
    [14, 16],
    'one finding for each inode',
  );
  t.match(dup[0]!.message, /1596 multiply-claimed blocks: 5884, 5886, /, 'which says how many blocks, and the first ones');
  t.ok(f.length < 20, `a handful of findings in all (${f.length})`);
});

t.test('i_blocks values come from the text, classification uses them', async (t) => {
  const text = await fx('checks/e2fsck-fn-iblocks.txt');
  t.same(iBlocksFromText(text).get(14), { is: 200, should: 96 });
  const ps = parseProblemLog(await fx('checks/problem-log-iblocks.xml'));
  const f = classifyProblems(ps, text, {
    manifestInodes: new Map([
      [14, '/a'],
      [15, '/b'],
    ]),
    migratedInodes: new Set([14, 15]),
  });
  t.same(
    f.map((x) => `${x.ino}:${x.class}`),
    ['14:leak', '15:corruption'],
  );
});

t.test('e2fsck exit bitmask', async (t) => {
  t.same(decodeExit(5), {
    code: 5,
    fixed: true,
    reboot: false,
    uncorrected: true,
    operationalError: false,
    usageError: false,
    cancelled: false,
    libraryError: false,
  });
  t.equal(decodeExit(8).operationalError, true);
  t.equal(decodeExit(128).libraryError, true);
});

t.test('debugfs stat: block map, indirect levels, fast symlink, extents', async (t) => {
  const text = await fx('image/debugfs-stat-blockmapped.txt');
  const parts = text
    .split(/^debugfs: /m)
    .slice(1)
    .map((p) => p.slice(p.indexOf('\n') + 1));
  const [a, b, l, d] = parts.map(parseDebugfsStat);
  t.equal(a!.mapping, 'blocks');
  t.equal(a!.dataBlocks, 8);
  t.equal(b!.levels.dind, true, 'sparse file reaching the DIND tree');
  t.equal(b!.dataBlocks, 12);
  t.equal(l!.mapping, 'fast-symlink');
  t.equal(l!.fastLinkTarget, '/some/where');
  t.equal(d!.type, 'directory');
  const e = parseDebugfsStat(await fx('image/debugfs-stat-extents.txt'))!;
  t.equal(e.mapping, 'extents');
  t.equal(e.flags & 0x80000, 0x80000);
  t.equal(e.dataBlocks, 200);
});

t.test('console oracle: a clean real boot has no findings; kernel messages become kernel findings', async (t) => {
  t.same(scanConsole(await fx('console/stock-6.1-clean-boot.log')), []);
  // Message formats as the 6.1 kernel prints them (fs/ext4/super.c, kernel/panic.c).
  const log = [
    '[    5.1] EXT4-fs error (device vda): ext4_validate_block_bitmap:390: comm chattr: bg 0: bad block bitmap checksum',
    '[    5.2] ------------[ cut here ]------------',
    '[    5.2] WARNING: CPU: 0 PID: 80 at fs/ext4/migrate.c:123 ext4_ext_migrate+0x1a/0x400',
    '[    5.2] Call Trace:',
    '[    5.2]  <TASK>',
    '[    5.2] ---[ end trace 0000000000000000 ]---',
    '[    6.0] normal line',
  ].join('\n');
  const f = scanConsole(log, { boot: 'workload boot' });
  t.same(
    f.map((x) => x.code),
    ['ext4-error', 'warning'],
  );
  t.ok(f.every((x) => x.class === 'kernel'));
  t.match(f[1]!.detail!, /Call Trace:[\s\S]*end trace/, 'the trace is kept');
});

t.test('symbol table: resolve, symbolize, close matches for unknown names', async (t) => {
  const s = SymbolTable.parse(
    'ffffffff81000000 T _text\nffffffff8143fac0 T ext4_ext_migrate\nffffffff8143f4b0 t finish_range\nffffffff81440470 T ext4_ind_migrate\n',
  );
  t.equal(s.resolve('ext4_ext_migrate'), 0xffffffff8143fac0n);
  t.equal(s.symbolize(0xffffffff8143fac4n), 'ext4_ext_migrate+0x4');
  t.throws(() => s.resolve('ext4_migrate'), /Close matches: .*ext4_ext_migrate/);
});

t.test("qcrash-io's bytes are what the host computes", async (t) => {
  // Compile the guest writer for the host and compare its output with generatedBytes.
  const dir = mkdtempSync(join(tmpdir(), 'qcrash-io-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('gcc', ['-O2', '-o', join(dir, 'io'), new URL('../../vm-images/guest/qcrash-io.c', import.meta.url).pathname]);
  execFileSync(join(dir, 'io'), ['write', join(dir, 'out'), '0', '1001', '12345', '0']);
  t.same(readFileSync(join(dir, 'out')), generatedBytes(12345, 1001));
});
