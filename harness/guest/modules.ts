import { readFile } from 'node:fs/promises';
import { InfraError } from '../util/errors.ts';

/** The drivers the guest needs from a modular kernel: the disk, the agent port, the filesystem. */
export const guestModules = ['virtio_pci', 'virtio_blk', 'virtio_console', 'ext4'];

/**
 * Module files (relative to /lib/modules/<release>) in load order, dependencies
 * first, resolved from modules.dep in the order `modprobe --show-depends`
 * gives (depmod lists a module's dependencies so that the last loads first).
 * Modules listed in modules.builtin are skipped: they are part of the kernel.
 */
export async function resolveModules(modulesDir: string, wanted = guestModules): Promise<string[]> {
  const dep = await readFile(`${modulesDir}/modules.dep`, 'utf8').catch(() => {
    throw new InfraError(`cannot read ${modulesDir}/modules.dep: reinstall the kernel package or run depmod`);
  });
  const builtin = new Set(
    (await readFile(`${modulesDir}/modules.builtin`, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(moduleName),
  );
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of dep.split('\n')) {
    const [file, rest] = line.split(':');
    if (!file || rest === undefined) continue;
    deps.set(file, rest.trim().split(/\s+/).filter(Boolean));
    byName.set(moduleName(file), file);
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const d of [...(deps.get(file) ?? [])].reverse()) visit(d);
    order.push(file);
  };
  for (const w of wanted) {
    const name = w.replace(/-/g, '_');
    if (builtin.has(name)) continue;
    const file = byName.get(name);
    if (!file) throw new InfraError(`module ${w} is neither built in nor in ${modulesDir}/modules.dep`);
    visit(file);
  }
  return order;
}

function moduleName(path: string): string {
  const base = path.split('/').pop() ?? path;
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}
