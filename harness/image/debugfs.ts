import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { sha256 } from '../util/hash.ts';
import { TempDir } from '../util/tempdir.ts';
import type { MappingKind } from './manifest.ts';

/** What `debugfs -R 'stat PATH'` says about an inode, the parts qcrash uses. */
export interface InodeStat {
  ino: number;
  type: string;
  flags: number;
  size: number;
  links: number;
  /** i_blocks in 512-byte units as debugfs prints "Blockcount". */
  blockcount: number;
  mapping: MappingKind;
  /** The raw "BLOCKS:"/"EXTENTS:" section, for reports. */
  map: string;
  /** Data blocks from the map (index blocks such as (IND) excluded), holes not counted. */
  dataBlocks: number;
  /** Map section mentions (IND)/(DIND)/(TIND). */
  levels: { ind: boolean; dind: boolean; tind: boolean };
  fastLinkTarget?: string;
}

export const EXTENTS_FL = 0x80000;
export const INLINE_DATA_FL = 0x10000000;

/** Parse one inode's `stat` output (debugfs 1.47). */
export function parseDebugfsStat(text: string): InodeStat | undefined {
  const head = /Inode:\s*(\d+)\s+Type:\s*(\S+)\s+Mode:\s*\S+\s+Flags:\s*(0x[0-9a-f]+)/i.exec(text);
  if (!head) return undefined;
  const flags = parseInt(head[3]!, 16);
  const size = Number(/Size:\s*(\d+)/.exec(text)?.[1] ?? 0);
  const links = Number(/Links:\s*(\d+)/.exec(text)?.[1] ?? 0);
  const blockcount = Number(/Blockcount:\s*(\d+)/.exec(text)?.[1] ?? 0);
  const fast = /Fast link dest:\s*"(.*)"/.exec(text)?.[1];
  const mapMatch = /^(BLOCKS|EXTENTS):\s*\n?([\s\S]*?)(?:\n\s*\n|\n?$)/m.exec(text);
  const map = mapMatch ? `${mapMatch[1]}:\n${mapMatch[2]!.trim()}` : '';
  let mapping: MappingKind;
  if (flags & INLINE_DATA_FL) mapping = 'inline';
  else if (fast !== undefined) mapping = 'fast-symlink';
  else if (flags & EXTENTS_FL) mapping = 'extents';
  else if (mapMatch || blockcount === 0) mapping = blockcount === 0 && !mapMatch ? 'none' : 'blocks';
  else mapping = 'blocks';
  return {
    ino: Number(head[1]),
    type: head[2]!,
    flags,
    size,
    links,
    blockcount,
    mapping,
    map,
    dataBlocks: countDataBlocks(mapMatch?.[2] ?? ''),
    levels: { ind: /\(IND\)/.test(map), dind: /\(DIND\)/.test(map), tind: /\(TIND\)/.test(map) },
    ...(fast !== undefined ? { fastLinkTarget: fast } : {}),
  };
}

/** "(0-11):1234-1245, (IND):1300, (12-20):1301-1309" or "(ETB0):..., (0-99):..." -> data blocks. */
function countDataBlocks(map: string): number {
  let n = 0;
  for (const m of map.matchAll(/\((\d+)(?:-(\d+))?\)/g)) {
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    n += b - a + 1;
  }
  return n;
}

/**
 * Run many debugfs requests in one process (`-f cmdfile`): one process per
 * file would dominate a check's time. Returns each command's output.
 */
export async function debugfsBatch(image: string, commands: string[], opts: { write?: boolean } = {}): Promise<string[]> {
  if (!commands.length) return [];
  await using tmp = await TempDir.create('debugfs');
  const cmdfile = tmp.join('cmds');
  await writeFile(cmdfile, commands.join('\n') + '\n');
  const r = await runOk(await tool('debugfs'), [...(opts.write ? ['-w'] : []), '-f', cmdfile, image]);
  // debugfs echoes each command as "debugfs: CMD" before its output.
  const text = r.stdout;
  const parts = text.split(/^debugfs: /m).slice(1);
  return commands.map((_, i) => {
    const p = parts[i] ?? '';
    const nl = p.indexOf('\n');
    return nl >= 0 ? p.slice(nl + 1) : '';
  });
}

/** debugfs quotes paths with spaces; recipes only use plain names, refuse the rest. */
export function debugfsPath(p: string): string {
  if (!/^\/[A-Za-z0-9._/-]*$/.test(p)) throw new Error(`path not usable with debugfs: ${p}`);
  return p;
}

export async function statPaths(image: string, paths: string[]): Promise<Map<string, InodeStat | undefined>> {
  const outs = await debugfsBatch(image, paths.map((p) => `stat ${debugfsPath(p)}`));
  return new Map(paths.map((p, i) => [p, parseDebugfsStat(outs[i]!)]));
}

export interface EntryState {
  path: string;
  exists: boolean;
  stat?: InodeStat;
  size?: number;
  sha256?: string;
  /** The file's bytes, for the paths asked for in `keepBytes`. */
  bytes?: Buffer;
}

/**
 * Read files' current state from an image without mounting it: one debugfs
 * run for the stats, one for dumping the bytes, hashes computed on the host.
 */
export async function readEntryState(image: string, paths: string[], types?: Map<string, string>, opts: { keepBytes?: ReadonlySet<string> } = {}): Promise<EntryState[]> {
  // One debugfs run stats and dumps every path (a run costs about 30 ms);
  // only the regular files' dumps are read.
  await using tmp = await TempDir.create('dump');
  const dumps = new Map(paths.map((p, i) => [p, join(tmp.path, `f${i}`)]));
  const outs = await debugfsBatch(image, paths.flatMap((p) => [`stat ${debugfsPath(p)}`, `dump ${debugfsPath(p)} ${dumps.get(p)}`]));
  const stats = new Map(paths.map((p, i) => [p, parseDebugfsStat(outs[2 * i]!)]));
  const names = new Map([...dumps].filter(([p]) => stats.get(p) && (types?.get(p) ?? stats.get(p)!.type) === 'regular'));
  const out: EntryState[] = [];
  for (const p of paths) {
    const st = stats.get(p);
    if (!st) {
      out.push({ path: p, exists: false });
      continue;
    }
    const file = names.get(p);
    const bytes = file ? await readFile(file).catch(() => undefined) : undefined;
    out.push({
      path: p,
      exists: true,
      stat: st,
      size: bytes ? bytes.length : st.size,
      ...(bytes ? { sha256: sha256(bytes) } : st.fastLinkTarget !== undefined ? { sha256: sha256(st.fastLinkTarget) } : {}),
      ...(bytes && opts.keepBytes?.has(p) ? { bytes } : {}),
    });
  }
  return out;
}
