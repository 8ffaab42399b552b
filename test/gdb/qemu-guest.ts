import { execa, type ResultPromise } from 'execa';
import { chmod, copyFile, lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Accel } from '../../harness/doctor/accel.ts';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { runOk } from '../../harness/util/exec.ts';
import { tool } from '../../harness/util/tools.ts';
import type { TempDir } from '../../harness/util/tempdir.ts';
import { SymbolTable } from '../../harness/vm/symbols.ts';

/*
 * A tiny guest for the gdbstub tests, independent of the harness's Vm: the
 * stock kernel, busybox-static, an init that prints /proc/kallsyms to the
 * console, ticks on the console (and opens a file) every 0.3 s, and runs
 * commands sent over a second serial port (ttyS1, a unix socket on the host).
 * `symbols` limits the kallsyms dump to lines containing those words.
 * With `ext4`, a block-mapped ext4 image rides in the initramfs and is
 * loop-mounted (loop is a module in the cloud kernel; ext4 and jbd2 are
 * built in); `setext FILE` is FS_IOC_SETFLAGS with EXTENTS_FL, what
 * `chattr +e` does.
 */

const init = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
[ -f /loop.ko ] && insmod /loop.ko
echo QCRASH-KALLSYMS-BEGIN
if [ -f /etc/syms ]; then grep -w -F -f /etc/syms /proc/kallsyms; else cat /proc/kallsyms; fi
echo QCRASH-KALLSYMS-END
(n=0; while :; do n=$((n+1)); echo "tick $n"; cat /proc/version >/dev/null; sleep 0.3; done) &
stty -F /dev/ttyS1 raw -echo
echo ready > /dev/ttyS1
while read -r cmd arg; do
  case "$cmd" in
    mount) mkdir -p /mnt; mount -o loop /disk.img /mnt; rc=$? ;;
    migrate) setext "/mnt/$arg"; rc=$? ;;
    sync) sync; rc=$? ;;
    open) cat /proc/version >/dev/null; rc=$? ;;
    *) rc=127 ;;
  esac
  echo "done $cmd $rc"
done < /dev/ttyS1 > /dev/ttyS1
`;

const setext = `#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
int main(int argc, char **argv) {
  int fd, flags;
  if (argc != 2) return 2;
  fd = open(argv[1], O_RDONLY);
  if (fd < 0) { perror("open"); return 1; }
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags)) { perror("FS_IOC_GETFLAGS"); return 1; }
  flags |= FS_EXTENT_FL;
  if (ioctl(fd, FS_IOC_SETFLAGS, &flags)) { perror("FS_IOC_SETFLAGS"); return 1; }
  return 0;
}
`;

export interface TestGuest {
  kernel: string;
  initrd: string;
}

/**
 * `ext4.fileKiB`: size of /f on a 1 KiB-block filesystem; above 268 KiB it
 * needs a double-indirect block, so migration runs free_dind_blocks.
 */
export async function buildTestGuest(tmp: TempDir, opts: { ext4?: { fileKiB: number }; symbols?: string[] } = {}): Promise<TestGuest> {
  const kernel = await stockKernel();
  const root = tmp.join('initramfs-root');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'mnt']) await mkdir(join(root, d), { recursive: true });
  const busybox = await tool('busybox');
  await copyFile(busybox, join(root, 'bin/busybox'));
  for (const a of (await runOk(busybox, ['--list'])).stdout.split('\n').filter(Boolean)) {
    if (a !== 'busybox') await symlink('busybox', join(root, 'bin', a));
  }
  await writeFile(join(root, 'init'), init);
  // Printing all 47k lines of kallsyms over the emulated UART costs seconds under TCG.
  if (opts.symbols) {
    await mkdir(join(root, 'etc'));
    await writeFile(join(root, 'etc/syms'), opts.symbols.join('\n') + '\n');
  }
  await chmod(join(root, 'init'), 0o755);
  if (opts.ext4) {
    await writeFile(tmp.join('setext.c'), setext);
    await runOk(await tool('gcc'), ['-static', '-O2', '-o', join(root, 'bin/setext'), tmp.join('setext.c')]);
    await copyFile(join(kernel.modulesDir!, 'kernel/drivers/block/loop.ko'), join(root, 'loop.ko'));
    const stage = tmp.join('ext4-stage');
    await mkdir(stage);
    await writeFile(join(stage, 'f'), randomBytes(opts.ext4.fileKiB * 1024));
    const img = join(root, 'disk.img');
    await runOk(await tool('mkfs.ext4'), ['-F', '-q', '-b', '1024', '-O', '^extent,^64bit', '-E', 'root_owner=0:0,nodiscard', '-d', stage, img, '8M'], {
      env: { MKE2FS_CONFIG: '/etc/mke2fs.conf' },
    });
    await runOk(await tool('tune2fs'), ['-O', 'extent', img]);
  }
  const list = (await listTree(root)).map((p) => relative(root, p)).filter(Boolean);
  const initrd = tmp.join('initramfs.cpio');
  await runOk(await tool('cpio'), ['-o', '-H', 'newc', '-R', '0:0', '--quiet', '-O', initrd], { cwd: root, input: list.join('\n') + '\n' });
  return { kernel: kernel.bzImage, initrd };
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [dir];
  for (const e of await readdir(dir)) {
    const p = join(dir, e);
    if ((await lstat(p)).isDirectory()) out.push(...(await listTree(p)));
    else out.push(p);
  }
  return out;
}

export interface TestVmOptions {
  accel: Accel;
  /** -S: vCPUs stopped before the first instruction. */
  startStopped?: boolean;
  /** Wait for the guest's "ready" on the control port (needs a booting guest). */
  waitReady?: boolean;
}

/**
 * QEMU started directly (setpriv --pdeathsig KILL, pidfile in the test's
 * TempDir, so TempDir.remove() kills it too), with the gdbstub on a unix
 * socket and the control serial port.
 */
export class TestVm implements AsyncDisposable {
  private ctl?: Socket;
  private ctlBuf = '';
  private ctlWaiters: Array<() => void> = [];
  private exitInfo?: { exitCode?: number; signal?: string };
  readonly gdbSocket: string;
  readonly consolePath: string;

  private constructor(
    private readonly proc: ResultPromise,
    private readonly dir: string,
    readonly argv: string[],
  ) {
    this.gdbSocket = join(dir, 'gdb.sock');
    this.consolePath = join(dir, 'console.log');
    proc.then(
      (r) => (this.exitInfo = { exitCode: r.exitCode, signal: r.signal ?? undefined }),
      (e: { exitCode?: number; signal?: string }) => (this.exitInfo = { exitCode: e.exitCode, signal: e.signal }),
    );
  }

  static async launch(tmp: TempDir, guest: TestGuest, o: TestVmOptions, name = 'vm'): Promise<TestVm> {
    const dir = tmp.join(name);
    await mkdir(dir);
    const q = (p: string) => p.replace(/,/g, ',,');
    const argv = [
      '-name', `qcrash-gdb-test-${name}`,
      '-machine', o.accel === 'kvm' ? 'q35,accel=kvm' : 'q35,accel=tcg',
      '-m', '256', '-smp', '1',
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-kernel', guest.kernel, '-initrd', guest.initrd,
      '-append', 'console=ttyS0 loglevel=5 panic=-1 nokaslr rdinit=/init tsc=reliable no_timer_check',
      '-chardev', `file,id=con,path=${q(join(dir, 'console.log'))}`, '-serial', 'chardev:con',
      '-chardev', `socket,id=ctl,path=${q(join(dir, 'ctl.sock'))},server=on,wait=off`, '-serial', 'chardev:ctl',
      '-chardev', `socket,id=gdb0,path=${q(join(dir, 'gdb.sock'))},server=on,wait=off`, '-gdb', 'chardev:gdb0',
      '-pidfile', join(dir, 'qemu.pid'),
      ...(o.startStopped ? ['-S'] : []),
    ];
    const qemu = await tool('qemu-system-x86_64');
    const proc = execa(await tool('setpriv'), ['--pdeathsig', 'KILL', '--', qemu, ...argv], {
      reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', encoding: 'utf8', cleanup: true,
    });
    const vm = new TestVm(proc, dir, [qemu, ...argv]);
    try {
      await vm.waitFor(async () => (await exists(join(dir, 'ctl.sock'))) && (await exists(join(dir, 'gdb.sock'))), 20_000, 'QEMU sockets');
      await vm.connectControl(join(dir, 'ctl.sock'));
      if (o.waitReady ?? true) await vm.waitCtl(/^ready$/m, 120_000);
    } catch (e) {
      const stderr = vm.exitInfo ? String((await proc).stderr) : '';
      await vm.kill();
      throw new Error(`test VM did not start: ${(e as Error).message}\n${stderr}\n${(await vm.console()).slice(-2000)}`);
    }
    return vm;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  async console(): Promise<string> {
    return readFile(this.consolePath, 'latin1').catch(() => '');
  }

  /** The guest's /proc/kallsyms as init printed it. */
  async kallsyms(): Promise<string> {
    const text = await this.console();
    const start = text.indexOf('QCRASH-KALLSYMS-BEGIN');
    const end = text.indexOf('QCRASH-KALLSYMS-END');
    if (start < 0 || end < 0) throw new Error('the guest did not print /proc/kallsyms');
    return text.slice(start, end).replace(/\r/g, '').split('\n').slice(1).join('\n');
  }

  async symbols(): Promise<SymbolTable> {
    return SymbolTable.parse(await this.kallsyms());
  }

  /** The last "tick N" the guest printed (it prints one every 0.3 s while it runs). */
  async lastTick(): Promise<number> {
    const m = [...(await this.console()).matchAll(/^tick (\d+)/gm)].at(-1);
    return m ? Number(m[1]) : 0;
  }

  private async connectControl(path: string): Promise<void> {
    const s = createConnection(path);
    this.ctl = s;
    s.setEncoding('latin1');
    await new Promise<void>((res, rej) => {
      s.once('connect', res);
      s.once('error', rej);
    });
    s.on('error', () => {});
    s.on('data', (d: string) => {
      this.ctlBuf += d.replace(/\r/g, '');
      const ws = this.ctlWaiters;
      this.ctlWaiters = [];
      for (const w of ws) w();
    });
  }

  private async waitCtl(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.ctlBuf.slice(from));
      if (m) return m;
      if (this.exited) throw new Error(`QEMU exited waiting for ${re}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${re} from the guest within ${timeoutMs} ms (got ${JSON.stringify(this.ctlBuf.slice(-200))})`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(left, 500));
        this.ctlWaiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  /**
   * Send a command to the guest's init; the promise resolves with its exit
   * status once the guest acknowledges it ("done CMD RC").
   */
  command(cmd: string, arg = '', timeoutMs = 120_000): Promise<number> {
    const from = this.ctlBuf.length;
    this.ctl!.write(`${cmd}${arg ? ` ${arg}` : ''}\n`);
    return this.waitCtl(new RegExp(`^done ${cmd} (\\d+)$`, 'm'), timeoutMs, from).then((m) => Number(m[1]));
  }

  private async waitFor(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (this.exited) throw new Error(`QEMU exited before ${what}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGKILL QEMU and wait for it to be gone (what a test does instead of the lead's QMP kill). */
  async kill(): Promise<void> {
    this.ctl?.destroy();
    if (!this.exited) this.proc.kill('SIGKILL');
    await this.proc.catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}

export async function waitUntil(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}
