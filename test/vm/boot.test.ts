import t from 'tap';
import { readFile, access, writeFile } from 'node:fs/promises';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { Vm, VmLaunchError, AbnormalShutdownError } from '../../harness/vm/machine/vm.ts';
import { saveVmState } from '../../harness/vm/machine/snapshot.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { qemuPids } from '../helpers/env.ts';

// Real QEMU with Debian's stock kernel and the qcrash initramfs (KVM when it
// works here, TCG otherwise; QCRASH_ACCEL=tcg forces TCG).
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const tmp = await TempDir.create('boot-test');
t.teardown(() => tmp.remove());
const disk = { path: tmp.join('empty.img'), format: 'raw' as const };
await writeFile(disk.path, Buffer.alloc(4 << 20));

const gone = (p: string) =>
  access(p).then(
    () => false,
    () => true,
  );

t.test('boot to agent ready; QMP kill returns the SHUTDOWN event; nothing is left behind', async (t) => {
  let dir = '';
  let pid: number | undefined;
  {
    await using vm = await Vm.launch({ kernel, initrd, disk });
    dir = vm.dir.path;
    pid = vm.pid;
    t.comment(`boot to agent ready (${vm.accel}): ${Math.round(vm.hello!.bootMs)} ms, guest uptime ${vm.hello!.uptime} s`);
    t.equal(vm.hello?.release, kernel.release, 'the agent runs on the booted kernel');
    t.ok(vm.hello!.uptime > 0 && vm.hello!.bootMs > 0);
    t.equal(
      Number((await readFile(vm.paths.pidfile, 'utf8')).trim()),
      pid,
      'the pidfile in the private dir names the QEMU we started',
    );
    t.same(qemuPids(dir), [pid], 'exactly one QEMU for this VM');
    t.equal(vm.argv[vm.argv.indexOf('-accel') + 1], vm.accel, 'the accelerator it chose is on the command line');
    t.ok(
      vm.argv.some((a) => a.includes('cache=writeback')),
      'the test disk is cache=writeback',
    );
    t.match(
      await vm.consoleText(),
      new RegExp(`qcrash-init: kernel ${kernel.release}, agent on /dev/vport`),
      'the console log has the guest init',
    );
    t.notMatch(await vm.consoleText(), /insmod .* failed/, 'every module loaded');

    const ev = await vm.kill();
    t.match(ev, { event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
    t.ok(vm.exited, 'QEMU exited');
    const sent = vm.qmp.transcript.entries.filter((e) => e.dir === 'send').map((e) => (e.msg as { execute: string }).execute);
    t.same(sent.slice(-2), ['stop', 'quit'], 'the kill is stop, then quit');
    t.match(vm.qmpTranscript(), /"event":"STOP"[^\n]*\n(.*\n)*.*"event":"SHUTDOWN"/, 'the transcript has STOP, then SHUTDOWN');
    await t.rejects(vm.agent.call('hello', [], 1000), /closed/, 'the agent channel is closed');
  }
  t.same(qemuPids(dir), [], 'no QEMU left');
  t.ok(await gone(dir), 'the private dir is removed');
});

t.test('shutdown escalates to SIGTERM when QMP is unusable', async (t) => {
  const vm = await Vm.launch({ kernel, initrd, disk, waitAgent: false });
  const dir = vm.dir.path;
  vm.qmp.close();
  const started = performance.now();
  const err = await vm.shutdown().then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, AbnormalShutdownError, 'the teardown says QEMU had to be stopped hard');
  t.equal((err as AbnormalShutdownError).escalation, 'SIGTERM');
  t.match((err as Error).message, /did not exit on QMP quit and was stopped with SIGTERM/);
  t.ok(vm.exited, 'QEMU is gone');
  t.ok(performance.now() - started >= 2500, 'after waiting for a quit that could not be sent');
  t.same(qemuPids(dir), []);
  t.ok(await gone(dir));
});

t.test('a graceful shutdown powers the guest off first', async (t) => {
  const vm = await Vm.launch({ kernel, initrd, disk });
  await vm.powerOff();
  await vm.shutdown();
  t.match(
    vm.qmp.eventLog.find((e) => e.event === 'SHUTDOWN'),
    { data: { guest: true } },
    'the guest shut itself down',
  );
  t.notOk(
    vm.qmp.transcript.entries.some((e) => e.dir === 'send' && (e.msg as { execute: string }).execute === 'quit'),
    'no quit was needed',
  );
  t.equal(vm.exitCode, 0);
});

t.test('a VM whose QEMU cannot start throws VmLaunchError with exit code, argv and stderr', async (t) => {
  const missing = tmp.join('no-such-disk.qcow2');
  const started = performance.now();
  const err = (await Vm.launch({ kernel, initrd, disk: { path: missing, format: 'qcow2' } }).catch(
    (e: unknown) => e,
  )) as VmLaunchError;
  // QEMU may leave its QMP socket file behind: the launch must not keep retrying it until the boot timeout.
  t.ok(performance.now() - started < 10_000, `failed in ${Math.round(performance.now() - started)} ms, not at the boot timeout`);
  t.type(err, VmLaunchError);
  t.equal(err.qemuExitCode, 1);
  t.ok(
    err.argv.some((a) => a.includes(missing)),
    'argv is kept',
  );
  t.match(err.stderr, /no-such-disk\.qcow2/, "QEMU's complaint is kept");
  t.same(qemuPids(tmp.path), []);
});

t.test('a VM that does not get ready in time is torn down and reports the console tail', async (t) => {
  const err = (await Vm.launch({ kernel, initrd, disk, bootTimeoutMs: 1500 }).catch((e: unknown) => e)) as VmLaunchError;
  t.type(err, VmLaunchError);
  t.match(err.message, /"ready" line/);
  t.equal(err.qemuExitCode, undefined, 'QEMU was running, not failing');
  t.same(qemuPids(tmp.path), [], 'and was stopped');
});

t.test('a VM restored from a saved state answers hello (it sent "ready" before the save)', async (t) => {
  const state = tmp.join('agent-ready.state');
  {
    await using vm = await Vm.launch({ kernel, initrd, disk });
    await saveVmState(vm.qmp, state);
  }
  await using vm = await Vm.launch({ kernel, initrd, disk, restoreFrom: state });
  t.comment(`restore to agent: ${Math.round(vm.hello!.bootMs)} ms`);
  t.equal(vm.hello?.release, kernel.release);
  const r = await vm.agent.call('mounts', [], 10_000);
  t.match(r.output, /^proc \/proc proc/m, 'the restored agent runs commands');
});
