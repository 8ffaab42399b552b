import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { debugfsBatch } from './debugfs.ts';
import type { Recipe, RecipeEntry } from './recipe.ts';

/**
 * Ownership and quota of a built image. Owners (uid, gid, project id) are
 * set with debugfs on the finished tree; quota is switched on after that
 * (tune2fs -O quota -Q ...), because tune2fs counts the usage of every inode
 * as it creates the quota inodes, while mke2fs -O quota with -d records the
 * usage of the empty filesystem only (its image then fails e2fsck -fn with
 * "Update quota info").
 */

/** The debugfs commands that give each entry of the recipe its owner (for small-files: each file and the directory). */
function ownerCommands(recipe: Pick<Recipe, 'entries'>): string[] {
  const cmds: string[] = [];
  for (const e of recipe.entries) {
    if (!('owner' in e) || !e.owner) continue;
    for (const path of ownedPaths(e)) {
      if (e.owner.uid !== undefined) cmds.push(`sif ${path} uid ${e.owner.uid}`);
      if (e.owner.gid !== undefined) cmds.push(`sif ${path} gid ${e.owner.gid}`);
      if (e.owner.project !== undefined) cmds.push(`sif ${path} projid ${e.owner.project}`);
    }
  }
  return cmds;
}

function ownedPaths(e: RecipeEntry): string[] {
  if (e.kind !== 'small-files') return [e.path];
  return [e.path, ...Array.from({ length: e.count }, (_, i) => `${e.path}/f${i}`)];
}

/** mkfs -O features the recipe's ownership and quota need before any file is written (project ids need the project feature). */
export function ownershipFeatures(recipe: Pick<Recipe, 'entries' | 'quota'>): string[] {
  const projects =
    recipe.quota.includes('prjquota') || recipe.entries.some((e) => 'owner' in e && e.owner?.project !== undefined);
  return projects ? ['project'] : [];
}

/** Give the entries their owners, then turn quota on so that its usage counts them. */
export async function applyOwnersAndQuota(img: string, recipe: Pick<Recipe, 'entries' | 'quota'>): Promise<void> {
  const cmds = ownerCommands(recipe);
  if (cmds.length) await debugfsBatch(img, cmds, { write: true });
  if (recipe.quota.length) await runOk(await tool('tune2fs'), ['-O', 'quota', '-Q', recipe.quota.join(','), img]);
}
