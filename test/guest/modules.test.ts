import t from 'tap';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { resolveModules, guestModules } from '../../harness/guest/modules.ts';
import { runOk } from '../../harness/util/exec.ts';

// The load order must be the one modprobe itself would use.
const kernel = await stockKernel();

t.test('modules resolved from modules.dep match modprobe --show-depends', async (t) => {
  const ours = await resolveModules(kernel.modulesDir!);
  const r = await runOk('/usr/sbin/modprobe', ['-a', '-S', kernel.release, '--show-depends', ...guestModules]);
  const theirs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^insmod (\S+)/.exec(line.trim());
    const rel = m?.[1]?.slice(`${kernel.modulesDir}/`.length);
    if (rel && !theirs.includes(rel)) theirs.push(rel);
  }
  t.ok(theirs.length > 0, 'modprobe lists modules to load');
  t.same(ours, theirs, 'same files in the same order');
  t.match(r.stdout, /^builtin ext4$/m, 'ext4 is built into the stock kernel');
  t.notOk(
    ours.some((m) => m.includes('/ext4')),
    'so it is not among the modules',
  );
  t.ok(
    ours.indexOf('kernel/drivers/virtio/virtio_ring.ko') < ours.indexOf('kernel/drivers/virtio/virtio.ko'),
    'virtio_ring loads before virtio',
  );
});

t.test('a module that is neither built in nor known is an error naming it', async (t) => {
  await t.rejects(resolveModules(kernel.modulesDir!, ['no_such_driver']), /no_such_driver/);
});
