import t from 'tap';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { Vm } from '../../harness/vm/machine/vm.ts';
import { stepCommand } from '../../harness/crash/step-command.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import type { Step } from '../../harness/scenario/model.ts';
import { blockMappedImage } from '../vm/ext4-image.ts';

// The writeback-pressure steps through the real agent: the settings reach
// /proc/sys (read back), the flush loop (qcrash-writeback) runs beside a
// workload, is refused a second start, and reports its rounds at the stop.
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const tmp = await TempDir.create('writeback-vm-test');
t.teardown(() => tmp.remove());

const loop = (action: 'start' | 'stop', deviceFlush: boolean): Step => ({
  kind: 'flush-loop',
  name: `flush-loop-${action}`,
  action,
  deviceFlush,
  pauseMs: 10,
});

t.test('sysctl settings and the flush loop in a guest', async (t) => {
  const img = await blockMappedImage(tmp, 'wb', { '/keep': 4096 });
  await using vm = await Vm.launch({ kernel, initrd, disk: { path: img.path, format: 'raw' } });
  const run = (s: Step) => vm.agent.call(...stepCommand(s, 7), 120_000);

  const set = await run({
    kind: 'sysctl',
    name: 'sysctl',
    settings: { 'vm.dirty_expire_centisecs': 1, 'vm.dirty_writeback_centisecs': 1 },
  });
  t.match(
    set,
    { exitCode: 0, output: 'vm.dirty_expire_centisecs = 1\nvm.dirty_writeback_centisecs = 1\n' },
    'each setting written and read back from /proc/sys',
  );
  t.equal((await run({ kind: 'mount', name: 'mount', options: ['commit=30'] })).exitCode, 0);

  for (const deviceFlush of [true, false]) {
    const mode = deviceFlush ? 'fsync of the device' : 'sync_file_range';
    t.equal((await run(loop('start', deviceFlush))).exitCode, 0, `${mode}: loop started`);
    t.match(
      await run(loop('start', deviceFlush)),
      { exitCode: 1, output: /already running/ },
      `${mode}: a second start is refused`,
    );
    t.equal(
      (await run({ kind: 'write', name: 'w', path: `/f-${deviceFlush}`, size: 65536, offset: 0, append: false, seed: 3 }))
        .exitCode,
      0,
    );
    await run({ kind: 'sleep', name: 'sleep', ms: 500 });
    const stop = await run(loop('stop', deviceFlush));
    t.match(
      stop,
      { exitCode: 0, output: /^flush-loop rounds=[1-9]\d*\n$/ },
      `${mode}: stopped, with its rounds (${stop.output.trim()})`,
    );
    t.match(await run(loop('stop', deviceFlush)), { exitCode: 1, output: /not running/ }, `${mode}: nothing left to stop`);
  }
  const bad = await run({ kind: 'sysctl', name: 'sysctl-2', settings: { 'vm.no_such_setting': 1 } });
  t.not(
    bad.exitCode,
    0,
    'a setting the kernel lacks fails the step (the host allow-list keeps this from happening in a scenario)',
  );
});
