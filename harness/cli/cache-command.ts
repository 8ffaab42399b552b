import type { Command } from 'commander';
import { cacheRoot } from '../util/paths.ts';
import { ConfigError, ExitCode } from '../util/errors.ts';
import { returnsExitCode } from './exit-code.ts';
import {
  cacheLabel,
  formatBytes,
  itemBytes,
  listKind,
  otherKinds,
  removeItem,
  sealedKinds,
  verifyItem,
  type CacheItem,
  type CacheKind,
  type Verdict,
} from './cache-inventory.ts';

interface CleanOptions {
  all?: boolean;
  bad?: boolean;
  images?: boolean;
  snapshots?: boolean;
  initramfs?: boolean;
  kernels?: boolean;
  symbols?: boolean;
  builds?: boolean;
  accel?: boolean;
}

/** `--builds` is the kernel build machinery: work trees, ccache, bisect clones. */
const buildKinds: CacheKind[] = ['kernel-work', 'ccache', 'bisect'];

async function verifyAll(): Promise<Verdict[]> {
  const out: Verdict[] = [];
  for (const k of sealedKinds) for (const item of await listKind(k)) out.push(await verifyItem(item));
  return out;
}

export function registerCache(program: Command): void {
  const cache = program.command('cache').description(`inspect and empty the cache (${cacheRoot()}, or $QCRASH_CACHE)`);
  cache
    .command('verify')
    .description('check every cache entry against the checksums recorded when it was made; exit 1 if any is bad')
    .option('--json', 'print the verdicts as JSON')
    .action(returnsExitCode(runCacheVerify));
  cache
    .command('clean')
    .description('remove cache entries (they are rebuilt when next needed); says what it removed, with sizes')
    .option('--all', 'everything qcrash caches')
    .option('--bad', 'only entries that fail verification, and partial files whose writer is gone')
    .option('--images', 'base images, and the manifests read from images of your own (--image)')
    .option('--snapshots', 'saved VM states')
    .option('--initramfs', 'guest initramfs archives')
    .option('--kernels', 'built kernels')
    .option('--symbols', 'kernel symbol tables read from guests')
    .option('--builds', 'kernel build trees, ccache and bisect clones (the next kernel build starts cold)')
    .option('--accel', 'KVM probe results')
    .action(runCacheClean);
}

async function runCacheVerify(o: { json?: boolean }): Promise<number> {
  const verdicts = await verifyAll();
  const bad = verdicts.filter((v) => !v.ok);
  if (o.json) await printVerdictsJson(verdicts, bad.length);
  else await printVerdicts(verdicts, bad.length);
  return bad.length ? ExitCode.failed : ExitCode.pass;
}

async function printVerdictsJson(verdicts: Verdict[], bad: number): Promise<void> {
  const rows = await Promise.all(
    verdicts.map(async (v) => ({
      kind: v.item.kind,
      path: v.item.path,
      ok: v.ok,
      ...(v.reason ? { reason: v.reason } : {}),
      bytes: await itemBytes(v.item),
    })),
  );
  process.stdout.write(JSON.stringify({ root: cacheRoot(), entries: rows, bad }, null, 2) + '\n');
}

async function printVerdicts(verdicts: Verdict[], bad: number): Promise<void> {
  for (const v of verdicts) {
    const size = formatBytes(await itemBytes(v.item));
    process.stdout.write(`${v.ok ? 'ok ' : 'bad'}  ${cacheLabel(v.item.path)}  (${size})${v.reason ? `: ${v.reason}` : ''}\n`);
  }
  process.stdout.write(
    `${verdicts.length} entr${verdicts.length === 1 ? 'y' : 'ies'} in ${cacheRoot()}: ${verdicts.length - bad} ok, ${bad} bad${bad ? ' (qcrash rebuilds a bad entry when it next needs it; `qcrash cache clean --bad` removes them now)' : ''}\n`,
  );
}

async function runCacheClean(o: CleanOptions): Promise<void> {
  const kinds = chosenKinds(o);
  if (!kinds.size && !o.bad) {
    throw new ConfigError(
      'say what to remove: --all, --bad, --images, --snapshots, --initramfs, --kernels, --symbols, --builds or --accel (see qcrash cache clean --help)',
    );
  }
  await removeItems(await chosenItems(kinds, !!o.bad));
}

/** The kinds of entry the clean options name (--bad is not a kind: it picks entries of any kind). */
function chosenKinds(o: CleanOptions): Set<CacheKind> {
  const kinds = new Set<CacheKind>();
  if (o.all) for (const k of [...sealedKinds, ...otherKinds]) kinds.add(k);
  for (const k of sealedKinds) if (o[k as keyof typeof o]) kinds.add(k);
  if (o.images) kinds.add('user-images');
  if (o.builds) for (const k of buildKinds) kinds.add(k);
  if (o.accel) kinds.add('accel');
  return kinds;
}

/** Every entry of those kinds, and with --bad every entry that fails verification, each once. */
async function chosenItems(kinds: Set<CacheKind>, bad: boolean): Promise<CacheItem[]> {
  const chosen: CacheItem[] = [];
  for (const k of kinds) chosen.push(...(await listKind(k)));
  if (bad) {
    const failed = (await verifyAll()).filter((v) => !v.ok).map((v) => v.item);
    chosen.push(...failed.filter((b) => !chosen.some((c) => c.path === b.path)));
  }
  return chosen.filter((c, i) => chosen.findIndex((x) => x.path === c.path) === i);
}

/** Removes the items, saying what went with its size; a partial file still being written is kept. */
async function removeItems(chosen: CacheItem[]): Promise<void> {
  let freed = 0;
  let removed = 0;
  for (const item of chosen) {
    if (item.what === 'partial' && !item.stale) {
      process.stdout.write(`kept     ${cacheLabel(item.path)}: being written by pid ${item.pid}\n`);
      continue;
    }
    const bytes = await removeItem(item);
    freed += bytes;
    removed++;
    process.stdout.write(`removed  ${cacheLabel(item.path)}  (${formatBytes(bytes)})\n`);
  }
  process.stdout.write(`removed ${removed} item${removed === 1 ? '' : 's'} from ${cacheRoot()}, freed ${formatBytes(freed)}\n`);
}
