import type { Step } from '../scenario/model.ts';
import type { Manifest } from '../image/manifest.ts';
import { generatedBytes } from '../guest/content.ts';
import { sha256 } from '../util/hash.ts';

/**
 * What the workload made durable before the kill, derived from the steps
 * the agent acknowledged; the content oracle (checks/content.ts) holds the
 * image to it.
 */
export interface DurabilityExpectations {
  /** chattr +e reported success and a sync, fsync of the file, or umount completed after it. */
  mustBeExtents: string[];
  /** Files written by the workload and made durable: their exact expected bytes. */
  written: Array<{ path: string; size: number; sha256: string }>;
  /** Files the workload touched without making the change durable: content may be old or new. */
  volatile: string[];
}

export const noExpectations: DurabilityExpectations = { mustBeExtents: [], written: [], volatile: [] };

/** What a migrate step names: a path, and with `recursive` everything below it. */
export interface MigrateTarget {
  path: string;
  recursive: boolean;
}

/** The one answer to "does this migrate target cover this path": the path itself, or below it when recursive. */
export function coveredBy(path: string, t: MigrateTarget): boolean {
  if (path === t.path) return true;
  if (!t.recursive) return false;
  const dir = t.path.endsWith('/') ? t.path : `${t.path}/`;
  return path.startsWith(dir);
}

export function migrateTargets(steps: readonly Step[]): MigrateTarget[] {
  return steps.flatMap((s) => (s.kind === 'migrate' ? s.paths.map((path) => ({ path, recursive: s.recursive })) : []));
}

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
): { expectations: DurabilityExpectations; migrated: MigrateTarget[] } {
  const done = new Map(records.filter((r) => r.exitCode !== undefined).map((r) => [r.name, r]));
  const pendingExtents = new Set<string>();
  const durableExtents = new Set<string>();
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
        if (r.exitCode !== 0) {
          // A write that failed in the guest (ENOSPC...) left some prefix of its bytes: nothing exact to expect.
          volatile.add(step.path);
          break;
        }
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
    migrated: migrateTargets(steps),
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
    const under = manifest.entries.filter((e) => coveredBy(e.path, { path: p, recursive }));
    for (const e of under) if ((e.type === 'file' || e.type === 'dir') && e.mapping === 'blocks') out.push(e.path);
    if (!under.length) out.push(p);
  }
  return out;
}
