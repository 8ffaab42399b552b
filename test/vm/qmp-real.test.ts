import t from 'tap';
import { execa } from 'execa';
import { QmpClient } from '../../harness/vm/qmp/client.ts';
import { QmpCommandError } from '../../harness/vm/qmp/errors.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { tool } from '../../harness/util/tools.ts';
import { qemuPids } from '../helpers/env.ts';

// The QMP client against real QEMU: a machine with no kernel, started with
// its CPU stopped (-S), is enough to exercise commands, errors and events.
t.test('real QEMU: status, errors, STOP/RESUME, and quit with a SHUTDOWN event', async (t) => {
  await using tmp = await TempDir.create('qmp-real-test');
  const sock = tmp.join('qmp.sock');
  const qemu = execa(
    await tool('qemu-system-x86_64'),
    [
      '-machine',
      'q35',
      '-accel',
      'tcg',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-S',
      '-chardev',
      `socket,id=qmp,path=${sock},server=on,wait=off`,
      '-mon',
      'chardev=qmp,mode=control',
    ],
    { reject: false, stdin: 'ignore' },
  );
  t.teardown(() => {
    qemu.kill('SIGKILL');
  });
  const qmp = new QmpClient();
  await qmp.connect(sock, 10_000);
  t.equal(qmp.greeting?.QMP.version.qemu.major, 7, 'QEMU 7.x greets');

  t.match(await qmp.execute('query-status'), { status: 'prelaunch', running: false });
  const err = (await qmp.execute('no-such-command').catch((e: unknown) => e)) as QmpCommandError;
  t.type(err, QmpCommandError);
  t.equal(err.reply.class, 'CommandNotFound');
  const bad = (await qmp.execute('query-status', { bogus: 1 }).catch((e: unknown) => e)) as QmpCommandError;
  t.equal(bad.reply.class, 'GenericError', 'an unexpected argument is refused');
  t.same(bad.args, { bogus: 1 });

  const since = qmp.events.length;
  await qmp.execute('cont');
  await qmp.waitEvent('RESUME', 5000, since);
  t.match(await qmp.execute('query-status'), { status: 'running', running: true });
  await qmp.execute('stop');
  await qmp.waitEvent('STOP', 5000, since);

  const shutdown = qmp.waitEvent('SHUTDOWN', 5000, since);
  t.equal(await qmp.quit(5000), true, 'QEMU closed the socket after quit');
  t.match(await shutdown, { event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
  const exit = await qemu;
  t.equal(exit.exitCode, 0, 'QEMU exited normally');
  t.same(qemuPids(tmp.path), [], 'no QEMU left');

  const sent = qmp.transcript.entries.filter((e) => e.dir === 'send').map((e) => (e.msg as { execute: string }).execute);
  t.same(sent, ['qmp_capabilities', 'query-status', 'no-such-command', 'query-status', 'cont', 'query-status', 'stop', 'quit']);
  const events = qmp.transcript.entries.flatMap((e) => (e.dir === 'recv' && (e.msg as { event?: string }).event) || []);
  t.same(events, ['RESUME', 'STOP', 'SHUTDOWN'], 'the transcript has every event in order');
  if (process.env.QCRASH_CAPTURE_FIXTURES) {
    await qmp.transcript.save(new URL('../fixtures/vm/qmp-session-qemu-7.2.jsonl', import.meta.url).pathname);
  }
});
