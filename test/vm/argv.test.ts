import t from 'tap';
import { qemuArgv, type QemuArgvOptions } from '../../harness/vm/machine/argv.ts';

// A pure function of its options: no QEMU runs here (test/vm/hold.test.ts
// boots 2 vCPUs for real).
const base: QemuArgvOptions = {
  kernel: { id: 'k', bzImage: '/k/bzImage' },
  initrd: '/k/initrd',
  disk: { path: '/d.img', format: 'raw' },
  paths: { qmp: '/s/qmp', agent: '/s/agent', console: '/s/console', pidfile: '/s/pid' },
  accel: 'tcg',
  memoryMb: 256,
  name: 'test',
};
const smp = (o: Partial<QemuArgvOptions>) => {
  const argv = qemuArgv({ ...base, ...o });
  return argv[argv.indexOf('-smp') + 1];
};

t.test(
  '-smp: one vCPU as before; more, each a socket of its own (the MP table a kernel without ACPI reads lists one CPU per package)',
  async (t) => {
    t.equal(smp({}), '1');
    t.equal(smp({ cpus: 1 }), '1');
    t.equal(smp({ cpus: 2 }), '2,sockets=2,cores=1,threads=1');
  },
);
