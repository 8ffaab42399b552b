import t from 'tap';
import { qemuArgv, writeLogErrorHint, type QemuArgvOptions } from '../../harness/vm/machine/argv.ts';

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

t.test(
  'a write-log recording: the disk device merges no requests (QEMU 7.2 blklogwrites adds 2 buffers to a write of up to IOV_MAX and its pwritev fails with EINVAL)',
  async (t) => {
    const diskDevice = (o: Partial<QemuArgvOptions>) => {
      const argv = qemuArgv({ ...base, ...o });
      return argv.find((a, i) => argv[i - 1] === '-device' && a.includes('drive=disk0')) ?? '';
    };
    const logged = diskDevice({ disk: { path: '/d.img', format: 'raw', writeLog: '/w.log' } });
    t.match(logged, /^virtio-blk-pci,drive=disk0,/);
    t.ok(logged.split(',').includes('request-merging=off'), logged);
    // A plain disk logs nothing and keeps QEMU's default.
    t.notOk(diskDevice({}).includes('request-merging'), diskDevice({}));
  },
);

t.test(
  'an EINVAL on a write-logged disk names blklogwrites and what to do; other errors and plain disks get no hint',
  async (t) => {
    const hint = writeLogErrorHint({ writeLog: '/u/workload.log' }, 'Invalid argument');
    t.match(hint, /blklogwrites \(log \/u\/workload\.log\)/);
    t.match(hint, /more than 1022 buffers/);
    t.match(hint, /request-merging=off/);
    t.equal(writeLogErrorHint({ writeLog: '/u/workload.log' }, 'Input/output error'), '');
    t.equal(writeLogErrorHint({}, 'Invalid argument'), '');
  },
);
