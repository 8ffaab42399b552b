import { basename, extname } from 'node:path';
import type { BaseImage } from '../image/build.ts';
import { blockMapped } from '../image/user-image.ts';
import { ConfigError } from '../util/errors.ts';

/** Where a run keeps the built-in scenario it made for `--image` (in its results folder): rerunnable as it is. */
export const imageSuiteFile = 'image-suite.yaml';

/**
 * The built-in set `qcrash run --image FILE` runs when no scenario is named:
 * the question a `chattr +e` user asks before converting a filesystem.
 * Everything block-mapped is migrated from the root, file by file as
 * chattr -R +e / does, with no crash (the verdict on the conversion itself),
 * and crashed at the kill kinds of the default suite: the agent's step
 * markers, a seeded time into the migration, kernel points (the entry of
 * the first migration and of one halfway through; the walks of indirect and
 * double-indirect maps and the freeing of a double-indirect map when the
 * image has such files), and the end of the commit sync forces. Kernel hits
 * are counted from the manifest so that each point is reached: a hit past
 * the image's block-mapped inodes would never fire.
 *
 * Returned as scenario YAML so that it goes through the same checks as any
 * scenario and the run folder holds it for reruns.
 */
export function imageSuiteYaml(base: BaseImage): string {
  const m = base.manifest;
  const todo = blockMapped(m);
  if (!todo.length) {
    throw new ConfigError(
      `--image ${base.path}: nothing in it is block-mapped (every file and directory already has extents, or holds inline data): there is nothing for chattr +e to migrate`,
    );
  }
  // Hard links name one inode more than once; the second ioctl finds it migrated already.
  const inodes = new Set(todo.map((e) => e.ino)).size;
  const has = (kind: string) => todo.some((e) => e.blockMap?.index.some(([k]) => k === kind));
  const files = m.entries.filter((e) => e.type === 'file');
  const mid = Math.ceil(inodes / 2);
  // The migration of n inodes under TCG takes a few ms each (more for large maps): the seeded time falls inside it, or soon after.
  const window = Math.min(2000, Math.max(100, inodes * 5));
  const name = `image-${
    basename(base.path, extname(base.path))
      .replace(/[^A-Za-z0-9._-]/g, '_')
      .replace(/^[^A-Za-z0-9]+/, '') || 'user'
  }`;
  const lines = [
    `# Made by qcrash run --image for ${base.path}`,
    `# (${m.entries.length} entries, ${files.length} files; ${todo.length} block-mapped files and directories, ${inodes} inodes).`,
    '# Rerun it with: qcrash run THIS-FILE; copy it to write scenarios of your own.',
    `name: ${name}`,
    'description: >',
    '  Migrate everything block-mapped (chattr -R +e /, file by file) with no',
    '  crash, and crash before, inside and after the migration.',
    `image: ${JSON.stringify(base.path)}`,
    'steps:',
    '  - mount',
    '  - migrate: { paths: [/], recursive: true }',
    '  - sync',
    '  - umount',
    'kill:',
    '  - none',
    '  - before: migrate',
    `  - during: { step: migrate, window_ms: ${window} }`,
    '  - after: migrate',
    '  - after: sync',
    '  - kernel: { step: migrate, symbol: ext4_ext_migrate, hit: 1 }',
    ...(mid > 1 ? [`  - kernel: { step: migrate, symbol: ext4_ext_migrate, hit: ${mid} }`] : []),
    ...(has('IND') ? ['  - kernel: { step: migrate, symbol: update_ind_extent_range, hit: 1 }'] : []),
    ...(has('DIND')
      ? [
          '  - kernel: { step: migrate, symbol: update_dind_extent_range, hit: 1 }',
          '  - kernel: { step: migrate, symbol: free_dind_blocks, hit: 1 }',
        ]
      : []),
    '  - commit: { step: sync, k: 1 }',
  ];
  return lines.join('\n') + '\n';
}
