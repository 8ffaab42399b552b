#!/usr/bin/env node
// The cron half of `qcrash nightly`: fetch one branch of a kernel tree, then
// let qcrash build its head, run the suite and compare with last night.
// qcrash itself fetches nothing, so a night is reproducible from the tree as
// it was; this script is the only part that talks to the remote.
//
//   node scripts/nightly.mjs --tree DIR --remote NAME|URL --branch BRANCH [--history DIR] [-- qcrash nightly options and scenarios]
//
// The branch is fetched into refs/remotes/qcrash-nightly/BRANCH of --tree
// (the tree's own branches and work tree are left alone) and followed under
// that name in the history. Exit codes are qcrash nightly's: 0 nothing new,
// 1 new findings that reproduced, 2 a usage error, 3 cases could not run.
// A crontab line (runs at 02:30, mails what the command prints):
//   30 2 * * *  cd /srv/qcrash && node scripts/nightly.mjs --tree /srv/linux --remote origin --branch ext4-next --history /srv/qcrash/nights
import { $, argv, path } from 'zx';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function usage(message) {
  process.stderr.write(
    `nightly: ${message}\nusage: node scripts/nightly.mjs --tree DIR --remote NAME|URL --branch BRANCH [--history DIR] [-- qcrash nightly options and scenarios]\n`,
  );
  process.exit(2);
}

const tree = argv.tree;
const remote = argv.remote;
const branch = argv.branch;
if (typeof tree !== 'string' || typeof remote !== 'string' || typeof branch !== 'string')
  usage('--tree, --remote and --branch are required');
if (branch.startsWith('-') || branch.includes('..') || /[\s~^:?*[\\]/.test(branch))
  usage(`--branch ${branch} is not a branch name`);
const history = typeof argv.history === 'string' ? path.resolve(argv.history) : path.join(repo, 'results', 'nightly');
const ref = `qcrash-nightly/${branch}`;

$.verbose = false;
try {
  // Only this branch, into a ref of its own, forced: a rebased branch is followed too.
  await $`git -C ${tree} fetch --quiet --no-tags ${remote} ${`+refs/heads/${branch}:refs/remotes/${ref}`}`;
} catch (e) {
  process.stderr.write(`nightly: fetching ${branch} from ${remote} into ${tree} failed:\n${e.stderr ?? e.message}`);
  process.exit(3);
}
const head = (await $`git -C ${tree} rev-parse --verify ${`refs/remotes/${ref}^{commit}`}`).stdout.trim();
process.stderr.write(`nightly: ${remote} ${branch} is at ${head}\n`);

// Everything after `--` goes to qcrash nightly as it is (scenarios, --config, --jobs, --seed...).
const extra = argv._.map(String);
const r = await $({
  nothrow: true,
  stdio: ['ignore', 'inherit', 'inherit'],
})`node ${path.join(repo, 'bin', 'qcrash.js')} nightly --tree ${tree} --branch ${ref} --history ${history} ${extra}`;
process.exit(r.exitCode ?? 3);
