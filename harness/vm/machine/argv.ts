import type { BootKernel } from './boot-kernel.ts';
import type { Accel } from './accel.ts';
import { restoreEventArgs } from './snapshot.ts';
import { bareMachineArgs } from './bare-machine.ts';

export interface VmPaths {
  qmp: string;
  agent: string;
  console: string;
  pidfile: string;
  gdb?: string;
}

/**
 * The machine type and the names of the devices on it. q35 and pc put
 * virtio on PCI; a `microvm` row (virtio-*-device on virtio-mmio) would need
 * virtio_mmio in the initramfs's module list and has not been tried yet.
 */
const machineProfiles = {
  q35: { machine: 'q35', blockDevice: 'virtio-blk-pci', serialBus: 'virtio-serial-pci' },
  pc: { machine: 'pc', blockDevice: 'virtio-blk-pci', serialBus: 'virtio-serial-pci' },
} as const;
type MachineName = keyof typeof machineProfiles;

/** The test disk. */
export interface VmDisk {
  path: string;
  format: 'qcow2' | 'raw';
  /**
   * Record every write and flush the guest sends to this disk, in the
   * dm-log-writes format, into this file (created or overwritten): the disk
   * goes behind QEMU's blklogwrites driver (harness/crash/writelog/).
   */
  writeLog?: string;
}

export interface QemuArgvOptions {
  kernel: BootKernel;
  initrd: string;
  disk: VmDisk;
  paths: VmPaths;
  accel: Accel;
  memoryMb: number;
  /**
   * vCPUs (-smp); default 1. More than one lets a hold point stop one vCPU
   * while another runs. Each is a socket of its own: SeaBIOS's MP table
   * lists one CPU per package, and a kernel without ACPI (the minimal
   * config) finds its CPUs only there.
   */
  cpus?: number;
  name: string;
  machine?: MachineName;
  /** Extra kernel command-line words (e.g. ext4 debug switches). */
  append?: string[];
  /** `-incoming` URI to restore a saved VM state instead of booting. */
  incoming?: string;
  /** Start with the CPU stopped (-S), e.g. to arm a breakpoint before the first instruction. */
  startStopped?: boolean;
  /** Appended verbatim, each element one argument. */
  extraArgs?: readonly string[];
}

/** QEMU option values separate keys with commas; a literal comma is written twice. */
function optValue(s: string): string {
  return s.replace(/,/g, ',,');
}

/** The guest kernel's command line. */
export function kernelCommandLine(extra: readonly string[] = []): string {
  return [
    'console=ttyS0',
    // Level 5 prints warnings and worse (WARNING:, EXT4-fs error) and skips the
    // chatty info lines that slow a TCG boot down.
    'loglevel=5',
    // A panic reboots at once, and -no-reboot turns the reboot into QEMU's exit.
    'panic=-1',
    // Fixed kernel addresses: symbols read once from kallsyms hold for every boot.
    'nokaslr',
    'rdinit=/init',
    'tsc=reliable',
    'no_timer_check',
    'i8042.noaux',
    'i8042.nokbd',
    'i8042.nopnp',
    // Freed pages are zeroed, and QEMU's migration stream carries a zero page
    // as a flag: the agent-ready snapshot holds only live memory (the
    // unpacked initrd's buffer and boot-time garbage are not saved), so every
    // case restores faster.
    'init_on_free=1',
    ...extra,
  ].join(' ');
}

/**
 * QEMU's argv for one qcrash VM. Every path is an argument of its own (no
 * shell is involved) with commas doubled inside option values.
 *
 * The test disk uses cache=writeback, never cache=unsafe. Both put QEMU's
 * writes in the host page cache, so after `stop` + `quit` every write the
 * guest saw complete is in the image file either way. But unsafe answers the
 * guest's flushes without running any node's flush-to-disk (block/io.c
 * bdrv_co_flush skips it under BDRV_O_NO_FLUSH): no fdatasync of the image,
 * and a blklogwrites node, which records flushes in that hook, would log
 * none, so the power-cut model (replay up to a flush) would have nothing to
 * cut at. writeback shows the guest a volatile cache and performs every
 * flush it sends. (cache=none would also do but needs O_DIRECT, which tmpfs
 * lacks.)
 */
export function qemuArgv(o: QemuArgvOptions): string[] {
  const profile = machineProfiles[o.machine ?? 'q35'];
  const argv = [
    '-name',
    o.name,
    '-machine',
    profile.machine,
    '-accel',
    o.accel,
    ...(o.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m',
    String(o.memoryMb),
    '-smp',
    (o.cpus ?? 1) === 1 ? '1' : `${o.cpus},sockets=${o.cpus},cores=1,threads=1`,
    ...bareMachineArgs,
    '-kernel',
    o.kernel.bzImage,
    '-initrd',
    o.initrd,
    '-append',
    kernelCommandLine(o.append),
    '-chardev',
    `file,id=con,path=${optValue(o.paths.console)}`,
    '-serial',
    'chardev:con',
    '-chardev',
    `socket,id=qmp,path=${optValue(o.paths.qmp)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
    '-device',
    `${profile.serialBus},id=vser0`,
    '-chardev',
    `socket,id=agent,path=${optValue(o.paths.agent)},server=on,wait=off`,
    '-device',
    'virtserialport,bus=vser0.0,chardev=agent,name=qcrash.agent',
    ...(o.disk.writeLog
      ? loggedDiskArgv(o.disk, o.disk.writeLog, profile.blockDevice)
      : [
          '-drive',
          `file=${optValue(o.disk.path)},format=${o.disk.format},if=none,id=disk0,cache=writeback,discard=unmap`,
          '-device',
          `${profile.blockDevice},drive=disk0`,
        ]),
    '-pidfile',
    o.paths.pidfile,
  ];
  if (o.paths.gdb)
    argv.push('-chardev', `socket,id=gdb0,path=${optValue(o.paths.gdb)},server=on,wait=off`, '-gdb', 'chardev:gdb0');
  // A restoring QEMU reports the end of the load as a MIGRATION event (snapshot.ts finishRestore).
  if (o.incoming) argv.push('-incoming', o.incoming, ...restoreEventArgs);
  if (o.startStopped) argv.push('-S');
  if (o.extraArgs) argv.push(...o.extraArgs);
  return argv;
}

/**
 * The test disk behind blklogwrites: the same cache=writeback as the plain
 * drive (host page cache, every guest flush performed, so it is logged), the
 * format node under the logger so the log holds guest sectors. The device
 * offers neither write-zeroes nor discard: QEMU 7.2 logs a write-zeroes
 * entry's header and its zeroed data in two steps another request can slip
 * between, which breaks the log, and discards would only add entries whose
 * data the replay must invent. The log file itself is never flushed to the
 * host's disk (cache.no-flush): a kill keeps it in the page cache, and a
 * flush per guest flush would only slow the run. The log superblock's entry
 * count is rewritten after every entry (log-super-update-interval=1), so a
 * reader can tell a torn tail from an entry damaged in the middle.
 *
 * The device does not merge requests (request-merging=off). QEMU 7.2's
 * blklogwrites writes each entry to the log as one pwritev of the guest's
 * buffers plus 2 of its own (the entry header and its padding), but
 * advertises the IOV_MAX (1024) of the file under it as its own max_iov.
 * virtio-blk merges adjacent queued writes up to that many buffers
 * (virtio_blk_submit_multireq), so a merged write of 1023 or 1024 buffers
 * reaches the log file as 1025 or 1026 and Linux's pwritev fails it with
 * EINVAL: the guest sees an I/O error and the recording is lost. A minimal
 * 6.12 guest writing a large file back (runs of 254-page and 2-page writes)
 * hits it. Unmerged, a write carries at most the device's seg-max buffers
 * (queue-size - 2 = 254), 256 with the header. The cost: one log entry and
 * one pwritev per guest write instead of per merged run (a 512-byte header
 * more each), and the log follows the guest's requests one for one.
 */
function loggedDiskArgv(disk: VmDisk, log: string, blockDevice: string): string[] {
  return [
    '-blockdev',
    `driver=file,node-name=disk0-file,filename=${optValue(disk.path)},cache.direct=off,cache.no-flush=off`,
    '-blockdev',
    `driver=${disk.format},node-name=disk0-format,file=disk0-file`,
    '-blockdev',
    `driver=file,node-name=disk0-log,filename=${optValue(log)},cache.direct=off,cache.no-flush=on`,
    '-blockdev',
    'driver=blklogwrites,node-name=disk0,file=disk0-format,log=disk0-log,log-sector-size=512,log-super-update-interval=1',
    '-device',
    `${blockDevice},drive=disk0,write-cache=on,discard=off,write-zeroes=off,request-merging=off`,
  ];
}

/**
 * What an EINVAL on a write-logged disk most likely is: QEMU 7.2's
 * blklogwrites writes an entry as the guest's buffers plus 2 of its own in one
 * pwritev while it advertises IOV_MAX (1024) buffers a request, so a write of
 * 1023 or more fails (block/blklogwrites.c blk_log_writes_co_log). The
 * recording's device merges no requests (loggedDiskArgv), which keeps every write
 * far below that; this names the cause should a setup still get there.
 */
export function writeLogErrorHint(disk: { writeLog?: string }, reason: string | undefined): string {
  if (!disk.writeLog || reason !== 'Invalid argument') return '';
  return (
    `; the disk is behind QEMU's blklogwrites (log ${disk.writeLog}), whose log pwritev fails with EINVAL when a write ` +
    `carries more than 1022 buffers (QEMU 7.2 adds 2 to the IOV_MAX of 1024 it lets virtio-blk merge up to): ` +
    `keep request-merging=off on the recorded disk's device (harness/vm/machine/argv.ts) or use a QEMU whose blklogwrites lowers its max_iov`
  );
}
