import type { KernelInfo } from '../kernel/kernel.ts';
import type { Accel } from '../doctor/accel.ts';

export interface VmPaths {
  qmp: string;
  agent: string;
  console: string;
  pidfile: string;
  gdb?: string;
}

export interface QemuArgvOptions {
  kernel: KernelInfo;
  initrd: string;
  disk: { path: string; format: 'qcow2' | 'raw' };
  paths: VmPaths;
  accel: Accel;
  memoryMb: number;
  name: string;
  /** Extra kernel command-line words (e.g. ext4 debug switches). */
  append?: string[];
  /** `-incoming` URI to restore a saved VM state instead of booting. */
  incoming?: string;
  /** Start with the CPU stopped (-S), e.g. to arm a breakpoint before the first instruction. */
  startStopped?: boolean;
}

/**
 * QEMU's argv for one qcrash VM. Every path is an argument of its own; no
 * shell is involved. `cache=writeback` (not unsafe): the guest's flushes
 * reach the image, so an acknowledged write survives `stop` + `quit` exactly
 * as the kill model says.
 */
/** QEMU option values separate keys with commas; a literal comma is written twice. */
export function optValue(s: string): string {
  return s.replace(/,/g, ',,');
}

export function qemuArgv(o: QemuArgvOptions): string[] {
  const append = [
    'console=ttyS0',
    // Level 5 prints warnings and worse (WARNING:, EXT4-fs error) and skips the
    // chatty info lines that slow a TCG boot down.
    'loglevel=5',
    'panic=-1',
    'nokaslr',
    'rdinit=/init',
    'tsc=reliable',
    'no_timer_check',
    'i8042.noaux',
    'i8042.nokbd',
    'i8042.nopnp',
    ...(o.append ?? []),
  ].join(' ');
  const argv = [
    '-name', o.name,
    '-machine', o.accel === 'kvm' ? 'q35,accel=kvm' : 'q35,accel=tcg',
    ...(o.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m', String(o.memoryMb),
    '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-kernel', o.kernel.bzImage,
    '-initrd', o.initrd,
    '-append', append,
    '-chardev', `file,id=con,path=${optValue(o.paths.console)}`,
    '-serial', 'chardev:con',
    '-chardev', `socket,id=qmp,path=${optValue(o.paths.qmp)},server=on,wait=off`,
    '-mon', 'chardev=qmp,mode=control',
    '-device', 'virtio-serial-pci,id=vser0',
    '-chardev', `socket,id=agent,path=${optValue(o.paths.agent)},server=on,wait=off`,
    '-device', 'virtserialport,bus=vser0.0,chardev=agent,name=qcrash.agent',
    '-drive', `file=${optValue(o.disk.path)},format=${o.disk.format},if=none,id=disk0,cache=writeback,discard=unmap`,
    '-device', 'virtio-blk-pci,drive=disk0',
    '-pidfile', o.paths.pidfile,
  ];
  if (o.paths.gdb) argv.push('-chardev', `socket,id=gdb0,path=${optValue(o.paths.gdb)},server=on,wait=off`, '-gdb', 'chardev:gdb0');
  if (o.incoming) argv.push('-incoming', o.incoming);
  if (o.startStopped) argv.push('-S');
  return argv;
}
