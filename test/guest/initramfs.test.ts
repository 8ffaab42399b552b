import t from 'tap';
import { readFile, stat } from 'node:fs/promises';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { sharedLibraries } from '../../harness/guest/userland.ts';
import { runOk } from '../../harness/util/exec.ts';
import { tool } from '../../harness/util/tools.ts';
import { sha256 } from '../../harness/util/hash.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';

// Built into a private cache so the test proves a cold build, not a cached one.
const cache = await TempDir.create('initramfs-test');
t.teardown(() => cache.remove());
process.env.QCRASH_CACHE = cache.path;
const kernel = await stockKernel();

/** `cpio -itv` of an archive: path -> the listing line (mode, links, size...). */
async function listing(archive: string): Promise<Map<string, string>> {
  const r = await runOk(await tool('cpio'), ['-itv', '--quiet', '-F', archive]);
  const out = new Map<string, string>();
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const name = line
      .split(/\s+/)
      .slice(8)
      .join(' ')
      .replace(/ -> .*$/, '');
    out.set(name, line);
  }
  return out;
}

async function extract(archive: string, member: string): Promise<Buffer> {
  await using dir = await TempDir.create('cpio-x');
  await runOk(await tool('cpio'), ['-id', '--quiet', '-F', archive, member], { cwd: dir.path });
  return readFile(dir.join(member));
}

t.test('the stock kernel initramfs has busybox, e2fsprogs with libraries, the agent and the modules', async (t) => {
  const started = performance.now();
  const initrd = await buildInitramfs(kernel);
  t.comment(`cold build: ${Math.round(performance.now() - started)} ms, ${(await stat(initrd.path)).size} bytes`);
  const files = await listing(initrd.path);

  t.match(files.get('bin/busybox'), /^-rwx/, 'busybox is a regular file');
  t.equal(
    sha256(await extract(initrd.path, 'bin/busybox')),
    sha256(await readFile(await tool('busybox'))),
    'and still busybox (not overwritten through an applet link)',
  );
  t.match(files.get('bin/sh'), /^l.* -> busybox$/, 'applets are links to busybox');
  for (const p of ['chattr', 'lsattr', 'filefrag']) {
    t.match(files.get(`bin/${p}`), /^-rwx/, `${p} is e2fsprogs' program, not a link`);
  }
  const libs = await sharedLibraries(['/usr/bin/chattr', '/usr/sbin/filefrag']);
  t.ok(
    libs.some((l) => l.includes('ld-linux')),
    'ldd names the dynamic loader',
  );
  for (const l of libs) t.ok(files.has(l.slice(1)), `${l} is in the archive`);
  t.match(files.get('init'), /^-rwx/);
  t.match(files.get('bin/qcrash-agent'), /^-rwx/);
  t.match(files.get('bin/qcrash-io'), /^-rwx/);
  const io = await extract(initrd.path, 'bin/qcrash-io');
  t.equal(io.subarray(1, 4).toString(), 'ELF');

  t.ok(initrd.modules.length >= 5, 'virtio modules and their dependencies');
  const load = (await extract(initrd.path, `lib/modules/${kernel.release}/qcrash.load`)).toString().trim().split('\n');
  t.same(load, initrd.modules, 'init loads them in the resolved order');
  for (const m of initrd.modules) t.ok(files.has(`lib/modules/${kernel.release}/${m}`), m);
  for (const [name, line] of files) if (!/^l/.test(line)) t.match(line, /^\S+\s+\d+\s+root\s+root/, `${name} is owned by root`);

  const again = performance.now();
  const cached = await buildInitramfs(kernel);
  t.equal(cached.path, initrd.path, 'a second build is the cached archive');
  t.ok(performance.now() - again < 5000, 'and quick');
});

t.test('a kernel with the drivers built in gets no modules', async (t) => {
  const builtin: KernelInfo = { ...kernel, id: 'test-builtin', kind: 'path', builtinDrivers: true };
  const initrd = await buildInitramfs(builtin);
  t.same(initrd.modules, []);
  const files = await listing(initrd.path);
  t.notOk(
    [...files.keys()].some((f) => f.startsWith('lib/modules/')),
    'no module directory',
  );
  t.not(initrd.hash, (await buildInitramfs(kernel)).hash, 'a different archive from the modular one');
});
