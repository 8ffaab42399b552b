import type { Step } from '../scenario/model.ts';
import type { Manifest } from '../image/manifest.ts';
import type { DurabilityExpectations } from '../checks/content.ts';
import { generatedBytes } from '../guest/content.ts';
import { sha256 } from '../util/hash.ts';

/** One step as the agent reported it. */
export interface StepRecord {
  name: string;
  kind: Step['kind'];
  /** Undefined when the step was still running (or never started) at the kill. */
  exitCode?: number;
  output?: string;
  startedAtMs?: number;
  durationMs?: number;
}

/**
 * What the acknowledged steps made durable. chattr's exit status is recorded
 * but the image is the truth: a migration counts as durable only when the
 * agent said it succeeded AND a later sync, fsync of that file, or umount
 * completed before the kill. `cleanShutdown` adds the final umount.
 */
export function deriveExpectations(
  steps: readonly Step[],
  records: readonly StepRecord[],
  manifest: Manifest | undefined,
  cleanShutdown: boolean,
): { expectations: DurabilityExpectations; migratedPaths: string[] } {
  const done = new Map(records.filter((r) => r.exitCode !== undefined).map((r) => [r.name, r]));
  const pendingExtents = new Set<string>();
  const durableExtents = new Set<string>();
  const migratedPaths: string[] = [];
  const volatile = new Set<string>();
  // New files the workload wrote: their content so far, and whether it is durable.
  const newFiles = new Map<string, { bytes: Buffer; durable: boolean }>();
  const inManifest = new Set(manifest?.entries.map((e) => e.path) ?? []);
  const flushAll = () => {
    for (const p of pendingExtents) durableExtents.add(p);
    pendingExtents.clear();
    for (const f of newFiles.values()) f.durable = true;
  };

  for (const step of steps) {
    if (step.kind === 'migrate') migratedPaths.push(...step.paths);
    const r = done.get(step.name);
    if (!r) {
      // Started but not finished when the VM died: its files may be in any state.
      if (step.kind === 'write' || step.kind === 'writer') volatile.add(step.path);
      continue;
    }
    switch (step.kind) {
      case 'migrate':
        if (r.exitCode === 0) for (const p of expandMigrated(step.paths, step.recursive, manifest)) pendingExtents.add(p);
        break;
      case 'sync':
      case 'umount':
        flushAll();
        break;
      case 'fsync':
        if (pendingExtents.delete(step.path)) durableExtents.add(step.path);
        if (newFiles.has(step.path)) newFiles.get(step.path)!.durable = true;
        break;
      case 'write': {
        if (inManifest.has(step.path)) {
          // The host does not keep the original bytes: the file's content is not checked, its map still is.
          volatile.add(step.path);
          break;
        }
        const prev = newFiles.get(step.path)?.bytes ?? Buffer.alloc(0);
        const data = generatedBytes(step.seed, step.size);
        const at = step.append ? prev.length : step.offset;
        const next = Buffer.alloc(Math.max(prev.length, at + data.length));
        prev.copy(next);
        data.copy(next, at);
        newFiles.set(step.path, { bytes: next, durable: false });
        break;
      }
      case 'writer':
        volatile.add(step.path);
        break;
      default:
        break;
    }
  }
  if (cleanShutdown) flushAll();
  const written: DurabilityExpectations['written'] = [];
  for (const [path, f] of newFiles) {
    if (f.durable && !volatile.has(path)) written.push({ path, size: f.bytes.length, sha256: sha256(f.bytes) });
    else volatile.add(path);
  }
  return {
    expectations: { mustBeExtents: [...durableExtents].sort(), written, volatile: [...volatile].sort() },
    migratedPaths,
  };
}

/**
 * The files a migrate step converts: the paths themselves, and with
 * `recursive` every file and directory the manifest has below them. Symlinks
 * are skipped (chattr -R does not follow or convert them), and so are empty
 * files: with no blocks there is nothing to prove.
 */
function expandMigrated(paths: readonly string[], recursive: boolean, manifest: Manifest | undefined): string[] {
  if (!manifest) return [...paths];
  const out: string[] = [];
  for (const p of paths) {
    const under = manifest.entries.filter((e) => e.path === p || (recursive && e.path.startsWith(p.endsWith('/') ? p : `${p}/`)));
    for (const e of under) if ((e.type === 'file' || e.type === 'dir') && e.mapping === 'blocks') out.push(e.path);
    if (!under.length) out.push(p);
  }
  return out;
}
