import { access, appendFile, mkdir, readFile, rename, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { runOk, run } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { cacheDir } from '../util/paths.ts';
import { ConfigError, MissingToolError } from '../util/errors.ts';
import { TempDir } from '../util/tempdir.ts';

export const defaultTarball = '/usr/src/linux-source-6.1.tar.xz';

/**
 * A kernel source as a git work tree in the cache, where qcrash may reset,
 * patch and build freely: the user's own tree is never touched.
 *  - the Debian tarball: unpacked once and committed as the base;
 *  - a user git tree: a shared clone, checked out at the requested revision.
 * Object files live in a persistent O= directory per source, so a change to
 * one file rebuilds one file. That directory sits directly inside the work
 * tree (git-ignored there): kbuild then names sources by the relative path
 * "../fs/ext4/..." instead of an absolute one, so the compiler command lines
 * are the same in every tree and ccache hits across trees (a bisect clone's
 * first build costs minutes, not a cold build).
 */
export interface KernelSource {
  /** Stable id of the source (tarball hash, or the user tree's path hash). */
  id: string;
  /** Git work tree qcrash owns. */
  work: string;
  /** Persistent object directory (make O=...), `objDirName` inside `work`. */
  obj: string;
  /** The commit every build starts from. */
  base: string;
  describe: string;
}

export const objDirName = 'qcrash-obj';

/** The object directory of a work tree, kept out of git's sight so checkouts and `git clean -fd` leave it alone. */
async function objDir(work: string): Promise<string> {
  const exclude = join(work, '.git', 'info', 'exclude');
  const text = await readFile(exclude, 'utf8').catch(() => '');
  if (!text.split('\n').includes(`/${objDirName}/`)) {
    await mkdir(join(work, '.git', 'info'), { recursive: true });
    await appendFile(exclude, `${text && !text.endsWith('\n') ? '\n' : ''}/${objDirName}/\n`);
  }
  return join(work, objDirName);
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

async function fileHash(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return h.digest('hex');
}

const gitEnv = {
  GIT_AUTHOR_NAME: 'qcrash',
  GIT_AUTHOR_EMAIL: 'qcrash@localhost',
  GIT_COMMITTER_NAME: 'qcrash',
  GIT_COMMITTER_EMAIL: 'qcrash@localhost',
};

export async function git(cwd: string, args: string[], ok = true) {
  const g = await tool('git');
  return ok ? runOk(g, args, { cwd, env: gitEnv }) : run(g, args, { cwd, env: gitEnv });
}

/** The Debian linux-source tarball, unpacked and committed once. */
export async function tarballSource(tarball = defaultTarball): Promise<KernelSource> {
  if (!(await exists(tarball))) throw new MissingToolError(tarball, 'linux-source-6.1');
  const id = `tar-${(await fileHash(tarball)).slice(0, 12)}`;
  const work = cacheDir('kernel-work', id);
  if (!(await exists(join(work, '.git', 'qcrash-ready')))) {
    await using tmp = await TempDir.create('kernel-src');
    await runOk('tar', ['-xf', tarball, '-C', tmp.path], { timeoutMs: 30 * 60_000 });
    const top = (await readdir(tmp.path)).find((d) => d.startsWith('linux'));
    if (!top) throw new ConfigError(`${tarball} does not contain a linux-* directory`);
    const src = join(tmp.path, top);
    await git(src, ['init', '-q']);
    // 75k files: an automatic gc after every build would cost minutes.
    await git(src, ['config', 'gc.auto', '0']);
    // -f: Debian's linux-source ships a .gitignore that ignores everything (/*).
    await git(src, ['add', '-A', '-f']);
    // A fixed date makes the base commit a function of the tarball alone, so a
    // kernel built from it has the same id on every machine (shards of one
    // validate, built on several machines, are then known to be one kernel).
    const date = '2026-01-01T00:00:00Z';
    await runOk(await tool('git'), ['commit', '-q', '-m', `base: ${top} from ${tarball}`], {
      cwd: src,
      env: { ...gitEnv, GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date },
    });
    await runOk('touch', [join(src, '.git', 'qcrash-ready')]);
    await mkdir(cacheDir('kernel-work'), { recursive: true });
    await rename(src, work).catch(async (e) => {
      if (!(await exists(join(work, '.git', 'qcrash-ready')))) throw e;
    });
  }
  const base = (await git(work, ['rev-parse', 'HEAD~0'])).stdout.trim();
  const root = (await git(work, ['rev-list', '--max-parents=0', 'HEAD'])).stdout.trim().split('\n')[0]!;
  return { id, work, obj: await objDir(work), base: root || base, describe: `${tarball}` };
}

/**
 * Marks a clone qcrash made for itself (the bisect clone): it is built in
 * place, at the revision it has checked out, instead of through a second
 * clone. A user's tree never has it, so it is never modified.
 */
export const ownedTreeMarker = 'qcrash-owned';

export async function markOwnedTree(work: string): Promise<void> {
  await writeFile(join(work, '.git', ownedTreeMarker), 'this clone belongs to qcrash: it builds here and may reset it\n');
}

/**
 * Our clone borrows the user's objects (`clone --shared`). A branch that was
 * rebased and a `git gc` in the user's tree (what a nightly of linux-next
 * meets every day) leave refs here naming objects that exist nowhere, and git
 * refuses to fetch into a repository with such refs ("bad object"). Those
 * refs are dropped (HEAD becomes an unborn branch until the next checkout);
 * the objects that remain and the build directory stay.
 */
export async function dropRefsToLostObjects(work: string): Promise<string[]> {
  const refs = (await git(work, ['for-each-ref', '--format=%(objectname) %(refname)'])).stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ') as [string, string]);
  const dropped: string[] = [];
  if (refs.length) {
    const check = await run(await tool('git'), ['cat-file', '--batch-check'], {
      cwd: work,
      input: refs.map(([sha]) => sha).join('\n') + '\n',
    });
    const missing = new Set(
      check.stdout
        .split('\n')
        .filter((l) => l.endsWith(' missing'))
        .map((l) => l.split(' ')[0]),
    );
    for (const [sha, ref] of refs) {
      if (!missing.has(sha)) continue;
      await git(work, ['update-ref', '--no-deref', '-d', ref]);
      dropped.push(ref);
    }
  }
  if ((await git(work, ['rev-parse', '--verify', '-q', 'HEAD^{commit}'], false)).failed) {
    await git(work, ['symbolic-ref', 'HEAD', 'refs/heads/qcrash-unborn']);
    dropped.push('HEAD');
  }
  return dropped;
}

/** A user's git tree at a revision (default HEAD), through a shared clone in the cache. */
export async function gitTreeSource(tree: string, rev = 'HEAD'): Promise<KernelSource> {
  const dir = resolve(tree);
  const top = await git(dir, ['rev-parse', '--show-toplevel'], false);
  if (top.failed) throw new ConfigError(`--tree ${tree} is not a git tree (git rev-parse failed: ${top.stderr.trim()})`);
  const commit = await git(dir, ['rev-parse', '--verify', `${rev}^{commit}`], false);
  if (commit.failed) throw new ConfigError(`unknown revision "${rev}" in ${tree}`);
  const root = top.stdout.trim();
  if (await exists(join(root, '.git', ownedTreeMarker))) {
    const sha = commit.stdout.trim();
    const id = `own-${createHash('sha256').update(root).digest('hex').slice(0, 12)}`;
    return { id, work: root, obj: await objDir(root), base: sha, describe: `${root}@${sha.slice(0, 12)}` };
  }
  const id = `git-${createHash('sha256').update(top.stdout.trim()).digest('hex').slice(0, 12)}`;
  const work = cacheDir('kernel-work', id);
  if (!(await exists(join(work, '.git')))) {
    await mkdir(cacheDir('kernel-work'), { recursive: true });
    await git(cacheDir('kernel-work'), ['clone', '-q', '--shared', '--no-checkout', top.stdout.trim(), work]);
  } else {
    await dropRefsToLostObjects(work);
    await git(work, ['fetch', '-q', top.stdout.trim(), '+refs/heads/*:refs/remotes/origin/*']);
  }
  const sha = commit.stdout.trim();
  await git(work, ['fetch', '-q', top.stdout.trim(), sha], false);
  return { id, work, obj: await objDir(work), base: sha, describe: `${dir}@${sha.slice(0, 12)}` };
}
