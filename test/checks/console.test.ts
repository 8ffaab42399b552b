import t from 'tap';
import { readFile } from 'node:fs/promises';
import { scanConsole, firstFrame } from '../../harness/checks/console.ts';
import { formatSignature, signatureOf } from '../../harness/results/signature.ts';

// Console findings titled as syzkaller titles crashes, on consoles captured
// from the stock kernel (test/fixtures/console/capture-console.ts).
const fixture = (name: string) => readFile(new URL(`../fixtures/console/${name}`, import.meta.url), 'utf8');

t.test('a clean boot has no findings', async (t) => {
  t.same(scanConsole(await fixture('stock-6.1-clean-boot.log')), []);
});

t.test('an ext4 error is titled by its function and message, numbers stripped', async (t) => {
  const [f, ...rest] = scanConsole(await fixture('stock-6.1-ext4-error.log'), { boot: 'recovery boot', recovery: 'kernel' });
  t.same(rest, []);
  t.match(f, {
    class: 'kernel',
    code: 'ext4-error',
    recovery: 'kernel',
    title: 'EXT4-fs error in ext4_lookup: deleted inode referenced: N',
  });
  t.match(f!.message, /^recovery boot: EXT4-fs error \(device vda\): ext4_lookup:1862/);
});

t.test('a panic is titled by its message; its trace is kept, the frames of the panic machinery skipped', async (t) => {
  const log = await fixture('stock-6.1-no-init-panic.log');
  const [f, ...rest] = scanConsole(log);
  t.same(rest, [], 'one report, not one per line of its trace');
  t.equal(f!.title, 'kernel panic: VFS: Unable to mount root fs on unknown-block(N,N)');
  t.match(f!.detail, /Call Trace:[\s\S]*mount_block_root/);
  t.equal(firstFrame(f!.detail!.split('\n')), 'mount_block_root', 'dump_stack_lvl and panic are not where the bug is');
});

t.test('the same report on two boots has one signature; different functions have two', async (t) => {
  const a = (await fixture('stock-6.1-ext4-error.log'))
    .replace(/\[\s*[\d.]+\]/g, '[   9.999999]')
    .replace('inode #12', 'inode #40');
  const b = (await fixture('stock-6.1-ext4-error.log')).replace('ext4_lookup:1862', 'ext4_iget:4902');
  const c = { scenario: 's', pointLabel: 'p' };
  const sig = (log: string) => formatSignature(signatureOf(c, scanConsole(log)[0]!));
  t.equal(sig(a), sig(await fixture('stock-6.1-ext4-error.log')), 'timestamps and inode numbers do not matter');
  t.not(sig(b), sig(a), 'another function is another bug');
  t.match(sig(a), /^s \| p \| - \| kernel \| ext4-error \| EXT4-fs error in ext4_lookup/);
});
