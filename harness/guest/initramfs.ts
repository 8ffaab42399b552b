import { access, chmod, copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { KernelInfo } from '../kernel/kernel.ts';
import { cacheDir, guestDir } from '../util/paths.ts';
import { hashJson, sha256 } from '../util/hash.ts';
import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { TempDir } from '../util/tempdir.ts';
import { resolveModules } from './modules.ts';
import { findGuestUserland } from './userland.ts';
import { writeNewcArchive } from './cpio.ts';
import { CacheEntry, useCacheEntry } from '../util/cache-entry.ts';
import { PartialFile } from '../util/partial-file.ts';

/** Bump when the layout changes so old cached archives are not reused. */
const BUILDER_VERSION = 2;
/** Static files from vm-images/guest/ that go into every archive. */
const guestFiles = ['init', 'qcrash-agent', 'qcrash-io.c', 'qcrash-writeback.c'];

export interface Initramfs {
  /** The newc cpio archive to pass as -initrd. */
  path: string;
  /** Content hash of everything that went in; names the cache entry. */
  hash: string;
  /** Module files (relative to /lib/modules/<release>) in load order; empty for built-in drivers. */
  modules: string[];
}

/**
 * The guest's initramfs for a kernel: busybox-static and its applet links,
 * e2fsprogs' chattr/lsattr/filefrag with their libraries and loader,
 * qcrash-io and qcrash-writeback (compiled static here), the init and the agent, and for a
 * modular kernel its virtio and ext4 modules with their dependencies under
 * /lib/modules/<release>/ (init loads only those matching `uname -r`, so the
 * archive also boots a kernel with the drivers built in). Cached by a hash of
 * every input (a changed agent script or kernel package rebuilds it) and
 * sealed by content: a damaged archive is rebuilt, never booted.
 */
export async function buildInitramfs(kernel: KernelInfo): Promise<Initramfs> {
  const userland = await findGuestUserland();
  const gcc = await tool('gcc');
  const modular = !kernel.builtinDrivers && kernel.modulesDir !== undefined;
  const modules = modular ? await resolveModules(kernel.modulesDir!) : [];
  const release = modular ? kernel.release || basename(kernel.modulesDir!) : '';

  const inputs: Record<string, string> = {};
  for (const f of guestFiles) inputs[`guest/${f}`] = sha256(await readFile(join(guestDir, f)));
  for (const f of [userland.busybox, ...userland.programs, ...userland.libraries]) inputs[f] = sha256(await readFile(f));
  for (const m of modules) inputs[`mod/${m}`] = sha256(await readFile(join(kernel.modulesDir!, m)));
  const hash = hashJson({ BUILDER_VERSION, inputs, modules, release, gcc }).slice(0, 16);
  const dir = cacheDir('initramfs', hash);
  const path = join(dir, 'initramfs.cpio');
  const entry = CacheEntry.folder('initramfs', dir, ['initramfs.cpio']);
  await useCacheEntry(entry, async () => {
    await makeArchive(path, { kernel, userland, gcc, modular, modules, release });
    await entry.seal();
  });
  return { path, hash, modules };
}

interface ArchiveInputs {
  kernel: KernelInfo;
  userland: Awaited<ReturnType<typeof findGuestUserland>>;
  gcc: string;
  modular: boolean;
  modules: string[];
  release: string;
}

async function makeArchive(path: string, { kernel, userland, gcc, modular, modules, release }: ArchiveInputs): Promise<void> {
  await using tmp = await TempDir.create('initramfs');
  const root = tmp.join('root');
  for (const d of ['bin', 'sbin', 'etc', 'lib', 'lib64', 'proc', 'sys', 'dev', 'mnt', 'tmp', 'run']) {
    await mkdir(join(root, d), { recursive: true });
  }
  await copyFile(userland.busybox, join(root, 'bin/busybox'));
  // Each C source of the guest becomes a static program of its name in /bin.
  for (const c of guestFiles.filter((f) => f.endsWith('.c'))) {
    await runOk(gcc, ['-static', '-O2', '-Wall', '-o', join(root, 'bin', basename(c, '.c')), join(guestDir, c)]);
  }
  // Real programs first, applet links after, skipping names already taken:
  // copying a program onto an existing busybox link would overwrite busybox.
  for (const p of userland.programs) await copyFile(p, join(root, 'bin', basename(p)));
  for (const l of userland.libraries) {
    await mkdir(join(root, dirname(l)), { recursive: true });
    await copyFile(l, join(root, l));
  }
  for (const a of (await runOk(userland.busybox, ['--list'])).stdout.split('\n').filter(Boolean)) {
    const target = join(root, 'bin', a);
    if (!(await exists(target))) await symlink('busybox', target);
  }
  if (modular) {
    const modRoot = join(root, 'lib/modules', release);
    for (const m of modules) {
      await mkdir(join(modRoot, dirname(m)), { recursive: true });
      await copyFile(join(kernel.modulesDir!, m), join(modRoot, m));
    }
    await writeFile(join(modRoot, 'qcrash.load'), modules.join('\n') + '\n');
  }
  await copyFile(join(guestDir, 'init'), join(root, 'init'));
  await copyFile(join(guestDir, 'qcrash-agent'), join(root, 'bin/qcrash-agent'));
  await chmod(join(root, 'init'), 0o755);
  await chmod(join(root, 'bin/qcrash-agent'), 0o755);

  // Written next to its final name (the temp dir may be another filesystem),
  // then renamed into place: a concurrent builder of the same hash writes the same content.
  await mkdir(dirname(path), { recursive: true });
  const partial = new PartialFile(path);
  try {
    await writeNewcArchive(root, partial.path);
    await partial.commit();
  } finally {
    await partial.discard();
  }
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}
