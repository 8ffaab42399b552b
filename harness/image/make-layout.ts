import { writeFile } from 'node:fs/promises';
import { run } from '../util/exec.ts';
import { ConfigError } from '../util/errors.ts';
import { TempDir } from '../util/tempdir.ts';
import type { Recipe } from './recipe.ts';
import { readGeometry } from './geometry.ts';
import { planLayouts, type LayoutFile, type PlannedFile } from './layout.ts';
import { layoutTool } from './layout-tool.ts';
import { readEntryState, statPaths } from './debugfs.ts';
import { readFile } from 'node:fs/promises';
import { sha256 } from '../util/hash.ts';
import { parseBlockMap, type BlockMap } from './block-map.ts';

export interface LayoutSource extends LayoutFile {
  /** Host file with the file's bytes (sparse: holes read as zeros). */
  host: string;
}

/**
 * Give the recipe's layout files (empty files mkfs -d made) their planned
 * physical layout, then read every block map back with debugfs and require
 * it to be the plan: a layout that could not be made exactly is a
 * ConfigError at the recipe's line, never a different image.
 */
export async function makeLayouts(image: string, recipe: Recipe, files: LayoutSource[]): Promise<Map<string, BlockMap>> {
  const where = (f: LayoutFile): Array<string | number> => ['entries', f.entry, 'layout'];
  const fail = (f: LayoutFile, message: string): ConfigError =>
    recipe.source ? recipe.source.error(where(f), message) : new ConfigError(`${recipe.file}: ${message}`);

  const geo = await readGeometry(image);
  const plan = planLayouts(recipe, geo, files);
  const inodes = await statPaths(
    image,
    files.map((f) => f.path),
  );
  const lines: string[] = [];
  const byIno = new Map<number, LayoutFile>();
  plan.forEach((p: PlannedFile, i) => {
    const st = inodes.get(p.path);
    if (!st) throw fail(files[i]!, `${p.path}: mkfs did not create the file`);
    byIno.set(st.ino, files[i]!);
    lines.push(`file ${st.ino} ${p.size} ${files[i]!.host}`, ...p.records, 'end');
  });

  await using tmp = await TempDir.create('layout');
  const planFile = tmp.join('plan');
  await writeFile(planFile, lines.join('\n') + '\n');
  const r = await run(await layoutTool(), [image, planFile]);
  if (r.failed) {
    const msg = r.stderr.trim() || r.stdout.trim() || `exit ${r.exitCode}`;
    const ino = Number(/inode (\d+)/.exec(msg)?.[1]);
    const f = byIno.get(ino) ?? files[0]!;
    throw fail(f, `the layout could not be made: ${msg}`);
  }

  const back = await statPaths(
    image,
    files.map((f) => f.path),
  );
  const maps = new Map<string, BlockMap>();
  plan.forEach((p, i) => {
    const got = parseBlockMap(back.get(p.path)?.map ?? '');
    const diff = compareMaps(p.expected, got);
    if (diff) throw fail(files[i]!, `${p.path}: the block map read back differs from the layout asked for: ${diff}`);
    maps.set(p.path, got);
  });
  const states = await readEntryState(
    image,
    files.map((f) => f.path),
  );
  for (const [i, s] of states.entries()) {
    const want = sha256(await readFile(files[i]!.host));
    if (s.sha256 !== want || s.size !== files[i]!.size)
      throw fail(
        files[i]!,
        `${s.path}: the bytes read back differ from the recipe's (${s.size} bytes, sha256 ${s.sha256}; expected ${files[i]!.size} bytes, ${want})`,
      );
  }
  return maps;
}

function compareMaps(want: BlockMap, got: BlockMap): string | undefined {
  const fmt = (r: [number, number, number] | undefined): string => (r ? `logical ${r[0]}+${r[2]} at ${r[1]}` : 'nothing');
  for (let i = 0; i < Math.max(want.data.length, got.data.length); i++) {
    const a = want.data[i];
    const b = got.data[i];
    if (!a || !b || a[0] !== b[0] || a[1] !== b[1] || a[2] !== b[2])
      return `data run ${i + 1}: planned ${fmt(a)}, read back ${fmt(b)}`;
  }
  for (let i = 0; i < Math.max(want.index.length, got.index.length); i++) {
    const a = want.index[i];
    const b = got.index[i];
    if (!a || !b || a[0] !== b[0] || a[1] !== b[1])
      return `index block ${i + 1}: planned ${a ? `${a[0]} at ${a[1]}` : 'nothing'}, read back ${b ? `${b[0]} at ${b[1]}` : 'nothing'}`;
  }
  if (got.unwritten?.length) return 'unwritten extents read back';
  return undefined;
}
