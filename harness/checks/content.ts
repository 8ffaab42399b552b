import type { Finding, RecoveryModeName } from '../findings/finding.ts';
import type { Manifest } from '../image/manifest.ts';
import { readEntryState } from '../image/debugfs.ts';
import { diffDataMaps, parseBlockMap } from '../image/block-map.ts';

/**
 * What the workload made durable before the kill, derived from the steps
 * the agent acknowledged (see harness/crash/expectations.ts).
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

/**
 * The content oracle: every manifest file reads back (on the host, with
 * debugfs, without mounting) with its size and sha256, fully block-mapped or
 * fully extent-mapped; what a completed sync made durable survived.
 * Runs on the image after journal replay and before any e2fsck repair: that
 * is what the kernel would see, and a repair may delete or clone files.
 */
export async function checkContent(
  image: string,
  manifest: Manifest,
  exp: DurabilityExpectations = noExpectations,
  recovery?: RecoveryModeName,
): Promise<Finding[]> {
  const volatile = new Set(exp.volatile);
  const written = new Map(exp.written.map((w) => [w.path, w]));
  const extra = exp.written.filter((w) => !manifest.entries.some((e) => e.path === w.path)).map((w) => w.path);
  const paths = [...manifest.entries.map((e) => e.path), ...extra];
  const states = new Map((await readEntryState(image, paths)).map((s) => [s.path, s]));
  const findings: Finding[] = [];
  const base = (code: string, path: string, message: string, detail?: string, ino?: number): Finding => ({
    class: 'data',
    source: code === 'not-durable' ? 'durability' : 'content',
    code,
    name: code,
    message: `${path}: ${message}`,
    path,
    ...(ino !== undefined ? { ino } : {}),
    ...(recovery ? { recovery } : {}),
    ...(detail ? { detail } : {}),
  });

  // A volatile file's bytes are not checked, but its block map is: a writer
  // changes what the file holds, never whether it is block- or extent-mapped.
  for (const e of manifest.entries) {
    const s = states.get(e.path)!;
    if (!s.exists || !s.stat) {
      findings.push(base('missing', e.path, `${e.type} is missing after recovery`, undefined, e.ino));
      continue;
    }
    const want = written.get(e.path) ?? { size: e.size, sha256: e.sha256 };
    if (e.type !== 'dir' && !volatile.has(e.path)) {
      if (s.size !== want.size) {
        findings.push(base('size-changed', e.path, `size ${s.size}, expected ${want.size}`, undefined, s.stat.ino));
      } else if (want.sha256 && s.sha256 !== want.sha256) {
        findings.push(base('content-changed', e.path, 'bytes differ from before the migration', `expected sha256 ${want.sha256}\nactual   sha256 ${s.sha256 ?? '(unreadable)'}`, s.stat.ino));
      }
    }
    if (!['blocks', 'extents', 'none', 'fast-symlink', 'inline'].includes(s.stat.mapping)) {
      findings.push(base('half-converted', e.path, `mapping is ${s.stat.mapping}`, s.stat.map, s.stat.ino));
    }
    // Migration rewrites the map, never the data: every logical block must
    // stay on the physical block it had (block map or extents alike).
    if (e.blockMap && e.type !== 'dir' && !volatile.has(e.path) && !written.has(e.path)) {
      const diff = diffDataMaps(e.blockMap, parseBlockMap(s.stat.map));
      if (diff) findings.push(base('mapping-changed', e.path, `physical mapping changed: ${diff}`, s.stat.map.slice(0, 2000), s.stat.ino));
    }
  }
  for (const p of extra) {
    const s = states.get(p)!;
    const want = written.get(p)!;
    if (!s.exists) findings.push(base('missing', p, 'file written and made durable by the workload is missing'));
    else if (s.size !== want.size || s.sha256 !== want.sha256) {
      findings.push(base('content-changed', p, 'durable write did not survive', `expected ${want.size} bytes sha256 ${want.sha256}\nactual ${s.size} bytes sha256 ${s.sha256}`, s.stat?.ino));
    }
  }
  if (exp.mustBeExtents.length) {
    const extraStates = await readEntryState(image, exp.mustBeExtents.filter((p) => !states.has(p)));
    for (const s of extraStates) states.set(s.path, s);
    for (const p of exp.mustBeExtents) {
      const s = states.get(p);
      if (s?.stat && s.stat.mapping !== 'extents') {
        findings.push(base('not-durable', p, `chattr +e reported success and a sync, fsync or umount completed after it, but the file is ${s.stat.mapping}-mapped`, `flags 0x${s.stat.flags.toString(16)}`, s.stat.ino));
      }
    }
  }
  return findings;
}
