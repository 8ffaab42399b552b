import t from 'tap';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { Vm } from '../../harness/vm/machine/vm.ts';
import { runWorkload } from '../../harness/crash/workload.ts';
import { stepCommand } from '../../harness/crash/step-command.ts';
import { parseMigrateOutput, readbackVerdict } from '../../harness/crash/step-report.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { run } from '../../harness/util/exec.ts';
import { tool } from '../../harness/util/tools.ts';
import type { Step } from '../../harness/scenario/model.ts';
import { qemuPids } from '../helpers/env.ts';
import { blockMappedImage, fileBytes, mappingOf, needsRecovery, replayedCopy } from './ext4-image.ts';

// chattr +e in a real guest on a small image made here: one ~200 KiB
// block-mapped file (12 direct blocks, an indirect block, 38 more), and a
// small tree for a recursive migration.
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const tmp = await TempDir.create('migrate-test');
t.teardown(() => tmp.remove());
const files = { '/f': 200 * 1024 + 123, '/tree/a': 70_000, '/tree/sub/b': 5000 };

const mount: Step = { kind: 'mount', name: 'mount', options: [] };
const migrate: Step = { kind: 'migrate', name: 'migrate', paths: ['/f'], recursive: false };
const sync: Step = { kind: 'sync', name: 'sync' };

async function image(name: string) {
  const img = await blockMappedImage(tmp, name, files);
  if ((await mappingOf(img.path, '/f')) !== 'blocks') throw new Error(`${name}: mkfs did not make /f block-mapped`);
  return img;
}

t.test('chattr +e, sync and a clean poweroff: extent-mapped, same bytes, e2fsck clean', async (t) => {
  const img = await image('clean');
  let dir = '';
  {
    await using vm = await Vm.launch({ kernel, initrd, disk: { path: img.path, format: 'raw' } });
    dir = vm.dir.path;
    // The workload's own step commands, one at a time, to look around in between.
    const run = (s: Step) => vm.agent.call(...stepCommand(s, 7));
    t.equal((await run(mount)).exitCode, 0, 'mounted');
    const one = await run(migrate);
    t.equal(one.exitCode, 0, 'migrating /f succeeded');
    t.match(
      one.output,
      /^migrate file 0 0 \/f flags=0x[0-9a-f]+ blocks=\d+\n$/,
      'and the ioctl returned 0 for it, with the readback after it',
    );
    const [f] = parseMigrateOutput('migrate', one.output).files;
    t.equal(f && readbackVerdict(f), 'truthful', 'FS_IOC_GETFLAGS right after says extent-mapped');
    t.ok(
      f?.readback?.blocks && 'value' in f.readback.blocks && f.readback.blocks.value >= 2 * 200,
      'and st_blocks counts the data (512-byte units)',
    );
    const tree = await run({ kind: 'migrate', name: 'tree', paths: ['/tree'], recursive: true });
    t.equal(tree.exitCode, 0, 'migrating /tree recursively succeeded');
    t.same(
      tree.output
        .trim()
        .split('\n')
        .map((l) => l.replace(/ flags=.*/, ''))
        .sort(),
      ['migrate dir 0 0 /tree', 'migrate dir 0 0 /tree/sub', 'migrate file 0 0 /tree/a', 'migrate file 0 0 /tree/sub/b'],
      'one result per file and directory',
    );
    t.ok(
      parseMigrateOutput('tree', tree.output).files.every((m) => readbackVerdict(m) === 'truthful'),
      'each read back extent-mapped',
    );
    t.match((await vm.agent.call('lsattr', ['/f'])).output, /^-+e-* \/mnt\/f$/m, 'lsattr in the guest shows the e flag');
    t.equal((await run(sync)).exitCode, 0);
    const ev = await vm.powerOff();
    t.match(ev, { event: 'SHUTDOWN', data: { guest: true } }, 'the guest powered itself off');
  }
  t.same(qemuPids(dir), [], 'no QEMU left');
  for (const [p, bytes] of img.files) {
    t.equal(await mappingOf(img.path, p), 'extents', `${p} is extent-mapped`);
    t.ok((await fileBytes(tmp, img.path, p)).equals(bytes), `${p} has the same bytes`);
  }
  const fsck = await run(await tool('e2fsck'), ['-fn', img.path]);
  t.equal(fsck.exitCode, 0, `e2fsck -fn finds nothing: ${fsck.stdout.trim().split('\n').slice(-2).join(' / ')}`);
});

t.test('a kill exactly before the migrate step leaves the file block-mapped', async (t) => {
  const img = await image('before');
  let dir = '';
  let transcript = '';
  {
    await using vm = await Vm.launch({ kernel, initrd, disk: { path: img.path, format: 'raw' } });
    dir = vm.dir.path;
    const out = await runWorkload(vm, [mount, migrate], { kind: 'before', step: 'migrate' }, 7);
    t.match(out.fired, {
      kind: 'before',
      step: 'migrate',
      shutdownEvent: { event: 'SHUTDOWN', data: { reason: 'host-qmp-quit' } },
    });
    t.same(
      out.records.map((r) => [r.name, r.exitCode]),
      [['mount', 0]],
      'mount was acknowledged and migrate never sent',
    );
    t.notMatch(vm.agent.transcript.toText(), / migrate /, 'the agent never saw the migrate step');
    transcript = vm.qmpTranscript();
  }
  t.same(qemuPids(dir), [], 'no QEMU left');
  t.match(transcript, /"execute":"stop"/, 'QMP transcript: stop');
  t.match(transcript, /"execute":"quit"/, 'quit');
  t.match(transcript, /"event":"SHUTDOWN"/, 'and the SHUTDOWN event');
  t.ok(await needsRecovery(img.path), 'the filesystem was mounted when the VM died');
  const replayed = await replayedCopy(tmp, img.path, 'before');
  t.ok(replayed.exitCode === 0 || replayed.exitCode === 1, `journal replayed: ${replayed.output.trim()}`);
  t.equal(await mappingOf(replayed.path, '/f'), 'blocks', '/f is still block-mapped');
  t.ok((await fileBytes(tmp, replayed.path, '/f')).equals(img.files.get('/f')!), 'with the same bytes');
});

t.test('a kill right after migrate-then-sync leaves the file extent-mapped once the journal is replayed', async (t) => {
  const img = await image('after-sync');
  let dir = '';
  let transcript = '';
  {
    await using vm = await Vm.launch({ kernel, initrd, disk: { path: img.path, format: 'raw' } });
    dir = vm.dir.path;
    const out = await runWorkload(vm, [mount, migrate, sync], { kind: 'after', step: 'sync' }, 7);
    t.same(
      out.records.map((r) => r.exitCode),
      [0, 0, 0],
      'mount, chattr and sync finished before the kill',
    );
    t.equal(out.fired.kind, 'after');
    transcript = vm.qmpTranscript();
  }
  t.same(qemuPids(dir), [], 'no QEMU left');
  t.match(
    transcript,
    /"execute":"stop"[^\n]*\n(.*\n)*.*"execute":"quit"[^\n]*\n(.*\n)*.*"event":"SHUTDOWN"/,
    'stop, quit, SHUTDOWN in that order',
  );
  t.ok(await needsRecovery(img.path), 'the crash image needs journal recovery');
  const replayed = await replayedCopy(tmp, img.path, 'after-sync');
  t.ok(replayed.exitCode === 0 || replayed.exitCode === 1, `journal replayed: ${replayed.output.trim()}`);
  t.notOk(await needsRecovery(replayed.path), 'and no longer does after the replay');
  t.equal(await mappingOf(replayed.path, '/f'), 'extents', '/f is extent-mapped');
  t.ok((await fileBytes(tmp, replayed.path, '/f')).equals(img.files.get('/f')!), 'with the same bytes');
});
