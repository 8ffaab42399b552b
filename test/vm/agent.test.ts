import t from 'tap';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { generatedBytes, holeStoreValues, writerRound } from '../../harness/guest/content.ts';
import { parseWriterOutput, type HolesReport, type WriterReport } from '../../harness/crash/step-report.ts';
import { Vm } from '../../harness/vm/machine/vm.ts';
import { runWorkload } from '../../harness/crash/workload.ts';
import { stepCommand } from '../../harness/crash/step-command.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import type { Step } from '../../harness/scenario/model.ts';
import { qemuPids } from '../helpers/env.ts';
import { blockMappedImage, debugfs, fileBytes } from './ext4-image.ts';

// Every step kind through the real agent in one VM, then the image checked
// on the host after a clean poweroff.
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const tmp = await TempDir.create('agent-test');
t.teardown(() => tmp.remove());

const weirdName = `/we ird;$(reboot)'"\\é.bin`;
const writes: Array<Extract<Step, { kind: 'write' }>> = [
  { kind: 'write', name: 'w1', path: '/new', size: 10_000, offset: 0, append: false, seed: 1 },
  { kind: 'write', name: 'w2', path: '/new', size: 3000, offset: 4096, append: false, seed: 2 },
  { kind: 'write', name: 'w3', path: '/new', size: 777, offset: 0, append: true, seed: 3 },
  { kind: 'write', name: 'w4', path: weirdName, size: 100, offset: 0, append: false, seed: 4 },
];

/** debugfs prints a backslash and bytes outside printable ASCII as \xNN. */
function debugfsEscaped(name: string): string {
  return [...Buffer.from(name)]
    .map((b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16)}`))
    .join('');
}

/** What the host expects /new to hold after w1..w3. */
function expectedNew(): Buffer {
  const b = Buffer.from(generatedBytes(1, 10_000));
  generatedBytes(2, 3000).copy(b, 4096);
  return Buffer.concat([b, generatedBytes(3, 777)]);
}

t.test('every step kind, markers and holds, with the results checked on the image', async (t) => {
  const img = await blockMappedImage(tmp, 'agent', { '/f': 100_000 });
  let dir = '';
  const reports = new Map<string, WriterReport | HolesReport | undefined>();
  {
    await using vm = await Vm.launch({ kernel, initrd, disk: { path: img.path, format: 'raw' } });
    dir = vm.dir.path;
    // The workload's own step commands, one at a time, to check each one's effect.
    const run = (s: Step, seed = 7) => vm.agent.call(...stepCommand(s, seed), 120_000);

    t.equal((await run({ kind: 'mount', name: 'm', options: ['commit=1', 'data=journal', 'noatime'] })).exitCode, 0);
    t.match(
      (await vm.agent.call('mounts')).output,
      /^\/dev\/vda \/mnt ext4 rw,noatime,.*commit=1.*data=journal/m,
      'mounted with the options given',
    );

    for (const w of writes) t.equal((await run(w)).exitCode, 0, `${w.name} wrote`);
    t.equal((await run({ kind: 'fsync', name: 'fs', path: '/new' })).exitCode, 0, 'fsync');
    const missing = await run({ kind: 'fsync', name: 'fs2', path: '/missing' });
    t.not(missing.exitCode, 0, 'fsync of a missing file fails');
    t.match(missing.output, /No such file/, 'and says why');

    const sl: Step = { kind: 'sync-loop', name: 'sl', action: 'start' };
    t.equal((await run(sl)).exitCode, 0, 'sync loop started');
    t.match(await run(sl), { exitCode: 1, output: /already running/ }, 'a second start is refused');
    t.equal((await run({ ...sl, action: 'stop' })).exitCode, 0, 'sync loop stopped');
    t.match(await run({ ...sl, action: 'stop' }), { exitCode: 1, output: /not running/ });

    for (const mode of ['odirect', 'mmap'] as const) {
      const w: Step = { kind: 'writer', name: `${mode}-start`, mode, path: `/${mode}`, size: 65536, paceUs: 0, action: 'start' };
      t.equal((await run(w)).exitCode, 0, `${mode} writer started`);
      await run({ kind: 'sleep', name: 'let it write', ms: 300 });
      const stop = await run({ ...w, name: `${mode}-stop`, action: 'stop' });
      t.equal(stop.exitCode, 0, `${mode} writer stopped`);
      reports.set(mode, parseWriterOutput(stop.output));
      t.match(reports.get(mode), { kind: 'writer', mode, size: 65536 }, `and reported its rounds: ${stop.output.trim()}`);
    }
    // A 1 MiB hole then one written page: the hole writer fills each of the 256 hole pages once, then exits.
    t.equal(
      (await run({ kind: 'write', name: 'sparse', path: '/sparse', size: 4096, offset: 1 << 20, append: false, seed: 7 }))
        .exitCode,
      0,
    );
    const holes: Step = {
      kind: 'writer',
      name: 'holes-start',
      mode: 'mmap-holes',
      path: '/sparse',
      size: 0,
      paceUs: 100,
      action: 'start',
    };
    t.equal((await run(holes)).exitCode, 0, 'hole writer started');
    await run({ kind: 'sleep', name: 'let it fill', ms: 1500 });
    const holesStop = await run({ ...holes, name: 'holes-stop', action: 'stop' });
    t.equal(holesStop.exitCode, 0, 'hole writer stopped (or already done)');
    reports.set('holes', parseWriterOutput(holesStop.output));
    t.match(
      reports.get('holes'),
      { kind: 'mmap-holes', holes: 256, first: 0, last: 255 * 4096 },
      `and reported its stores: ${holesStop.output.trim()}`,
    );
    t.equal((await run({ kind: 'drop-caches', name: 'dc' })).exitCode, 0, 'drop caches');

    const sleeping = vm.agent.send(...stepCommand({ kind: 'sleep', name: 's', ms: 400 }, 7));
    const marker = await sleeping.started;
    const slept = await sleeping.done;
    const doneAt = performance.now();
    t.equal(slept.exitCode, 0);
    t.ok(
      marker > 0 && doneAt - marker >= 380,
      `the start marker came ${Math.round(doneAt - marker)} ms before the reply to a 400 ms sleep`,
    );

    const held = vm.agent.send(...stepCommand({ kind: 'sync', name: 'held' }, 7), { hold: true });
    await held.held;
    const early = await Promise.race([
      held.started.then(() => 'started'),
      new Promise((r) => setTimeout(() => r('waiting'), 500)),
    ]);
    t.equal(early, 'waiting', 'a held step does not start before go');
    held.go();
    await held.started;
    t.equal((await held.done).exitCode, 0, 'and runs after go');

    t.match(await vm.agent.call('no-such-command'), { exitCode: 127, output: /unknown command/ });
    const syms = await vm.agent.call('kallsyms', [], 120_000);
    t.match(syms.output, /^[0-9a-f]+ [tT] ext4_ext_migrate$/m, 'kallsyms has ext4_ext_migrate');
    t.match(syms.output, /^ffffffff81000000 T /m, 'at the nokaslr addresses');
    t.match(await vm.agent.call('filefrag', ['/new']), { exitCode: 0, output: /extents? found/ });
    await vm.powerOff();
  }
  t.same(qemuPids(dir), []);

  t.ok(
    (await fileBytes(tmp, img.path, '/new')).equals(expectedNew()),
    'writes, an overwrite and an append left the bytes the host computed',
  );
  const root = await debugfs(img.path, 'ls -l /');
  t.ok(
    root.includes(debugfsEscaped(weirdName.slice(1))),
    'a name with spaces, quotes, $() and UTF-8 reached the guest literally',
  );
  for (const mode of ['odirect', 'mmap']) {
    t.match(await debugfs(img.path, `stat /${mode}`), /Size: 65536/, `the ${mode} writer's file`);
    const rounds = (reports.get(mode) as WriterReport).rounds;
    t.ok(rounds > 0, `${mode}: ${rounds} rounds in 300 ms`);
    t.ok(
      (await fileBytes(tmp, img.path, `/${mode}`)).equals(writerRound(7, rounds - 1, 65536)),
      `${mode}: every sector holds round ${rounds - 1}, as the host twin computes it`,
    );
  }
  const holesReport = reports.get('holes') as HolesReport;
  const sparseBytes = await fileBytes(tmp, img.path, '/sparse');
  const values = holeStoreValues(7, 256);
  const wrongPages = Array.from({ length: 256 }, (_, k) => k).filter((k) => {
    const page = sparseBytes.subarray(k * 4096, (k + 1) * 4096);
    return page[0] !== (k < holesReport.stored ? values[k] : 0) || page.subarray(1).some((b) => b !== 0);
  });
  t.same(
    wrongPages,
    [],
    `the first ${holesReport.stored} hole pages hold their store's byte as the host computes it, the rest zeros`,
  );
  const sparse = await debugfs(img.path, 'stat /sparse');
  const sectors = Number(/Blockcount: (\d+)/.exec(sparse)?.[1]);
  t.ok(sectors >= 257 * 8, `every hole page of /sparse got a block (${sectors} sectors of 512 bytes, 257 pages need ${257 * 8})`);
});

t.test('a kill a fixed delay after a step starts', async (t) => {
  const img = await blockMappedImage(tmp, 'delay', { '/f': 4096 });
  let dir = '';
  {
    await using vm = await Vm.launch({ kernel, initrd, disk: { path: img.path, format: 'raw' } });
    dir = vm.dir.path;
    const out = await runWorkload(
      vm,
      [{ kind: 'sleep', name: 'long', ms: 30_000 }],
      { kind: 'delay', step: 'long', delayMs: 300 },
      7,
    );
    const fired = out.fired as Extract<typeof out.fired, { kind: 'delay' }>;
    t.equal(fired.kind, 'delay');
    t.ok(fired.atMs >= 300 && fired.atMs < 1500, `killed ${Math.round(fired.atMs)} ms after the start marker`);
    t.equal(out.records[0]?.exitCode, undefined, 'the step had not finished');
    t.match(fired.shutdownEvent, { event: 'SHUTDOWN', data: { reason: 'host-qmp-quit' } });
    t.ok(vm.exited);
  }
  t.same(qemuPids(dir), [], 'no QEMU left');
});
