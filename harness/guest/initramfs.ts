import { copyFile, mkdir, readFile, readdir, rename, symlink, chmod, access, lstat } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import type { KernelInfo } from '../kernel/kernel.ts';
import { cacheDir, guestDir } from '../util/paths.ts';
import { hashJson, sha256 } from '../util/hash.ts';
import { run, runOk } from '../util/exec.ts';
import { tool, findProgram } from '../util/tools.ts';
import { MissingToolError } from '../util/errors.ts';
import { TempDir } from '../util/tempdir.ts';
import { resolveModules } from './modules.ts';

/** Bump when the layout changes so old cached archives are not reused. */
const BUILDER_VERSION = 1;
const guestFiles = ['init', 'qcrash-agent', 'qcrash-io.c'];
const e2fsprogsTools = ['chattr', 'lsattr'];

export interface Initramfs {
  path: string;
  hash: string;
  modules: string[];
}

/**
 * Build (or reuse) the guest's initramfs for a kernel: busybox-static,
 * e2fsprogs' chattr/lsattr with their libraries, qcrash-io, the init and the
 * agent, and, for a modular kernel, the virtio modules. Cached by a hash of
 * everything that goes in, so a changed agent script rebuilds it.
 */
export async function buildInitramfs(kernel: KernelInfo): Promise<Initramfs> {
  const busybox = await tool('busybox');
  const gcc = await tool('gcc');
  const bins: string[] = [];
  for (const t of e2fsprogsTools) {
    const p = await findProgram(t);
    if (!p) throw new MissingToolError(t, 'e2fsprogs');
    bins.push(p);
  }
  const libs = await sharedLibraries(bins);
  const modules = kernel.builtinDrivers || !kernel.modulesDir ? [] : await resolveModules(kernel.modulesDir);

  const inputs: Record<string, string> = {};
  for (const f of guestFiles) inputs[`guest/${f}`] = sha256(await readFile(join(guestDir, f)));
  for (const f of [busybox, ...bins, ...libs]) inputs[f] = sha256(await readFile(f));
  for (const m of modules) inputs[`mod/${m}`] = sha256(await readFile(join(kernel.modulesDir!, m)));
  const hash = hashJson({ BUILDER_VERSION, inputs, modules }).slice(0, 16);
  const dir = cacheDir('initramfs', hash);
  const path = join(dir, 'initramfs.cpio');
  if (await exists(path)) return { path, hash, modules };

  await using tmp = await TempDir.create('initramfs');
  const root = tmp.join('root');
  for (const d of ['bin', 'sbin', 'etc/qcrash', 'lib', 'lib64', 'proc', 'sys', 'dev', 'mnt', 'tmp', 'run']) {
    await mkdir(join(root, d), { recursive: true });
  }
  await copyFile(busybox, join(root, 'bin/busybox'));
  await runOk(gcc, ['-static', '-O2', '-Wall', '-o', join(root, 'bin/qcrash-io'), join(guestDir, 'qcrash-io.c')]);
  // Real binaries first, applet links after, skipping names already present:
  // copying onto an existing busybox link would overwrite busybox itself.
  for (const b of bins) await copyFile(b, join(root, 'bin', b.split('/').pop()!));
  for (const l of libs) {
    await mkdir(join(root, dirname(l)), { recursive: true });
    await copyFile(l, join(root, l));
  }
  const applets = (await runOk(busybox, ['--list'])).stdout.split('\n').filter(Boolean);
  for (const a of applets) {
    const target = join(root, 'bin', a);
    if (!(await exists(target))) await symlink('busybox', target);
  }
  for (const m of modules) {
    await mkdir(join(root, 'lib/modules', dirname(m)), { recursive: true });
    await copyFile(join(kernel.modulesDir!, m), join(root, 'lib/modules', m));
  }
  await writeText(join(root, 'etc/qcrash/modules'), modules.join('\n') + '\n');
  for (const f of ['init', 'qcrash-agent']) {
    const dest = f === 'init' ? join(root, 'init') : join(root, 'bin', f);
    await copyFile(join(guestDir, f), dest);
    await chmod(dest, 0o755);
  }

  const list = (await listTree(root)).map((p) => relative(root, p)).filter(Boolean);
  const out = tmp.join('initramfs.cpio');
  await runOk(await tool('cpio'), ['-o', '-H', 'newc', '-R', '0:0', '--quiet', '-O', out], {
    cwd: root,
    input: list.join('\n') + '\n',
  });
  await mkdir(dir, { recursive: true });
  // Rename into place: a concurrent builder of the same hash produces the same bytes.
  await rename(out, path);
  return { path, hash, modules };
}

async function writeText(p: string, s: string): Promise<void> {
  const { writeFile } = await import('node:fs/promises');
  await writeFile(p, s);
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [dir];
  for (const e of await readdir(dir)) {
    const p = join(dir, e);
    const st = await lstat(p);
    if (st.isDirectory()) out.push(...(await listTree(p)));
    else out.push(p);
  }
  return out;
}

/** The shared libraries (and the dynamic loader) that ldd lists for the binaries. */
async function sharedLibraries(bins: string[]): Promise<string[]> {
  const libs = new Set<string>();
  for (const b of bins) {
    const r = await run('ldd', [b]);
    for (const line of r.stdout.split('\n')) {
      const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
      if (m?.[1]) libs.add(m[1]);
    }
  }
  return [...libs].sort();
}
