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
    .action(
      returnsExitCode(async (o: { json?: boolean }) => {
        const verdicts = await verifyAll();
        const bad = verdicts.filter((v) => !v.ok);
        if (o.json) {
          const rows = await Promise.all(
            verdicts.map(async (v) => ({
              kind: v.item.kind,
              path: v.item.path,
              ok: v.ok,
              ...(v.reason ? { reason: v.reason } : {}),
              bytes: await itemBytes(v.item),
            })),
          );
          process.stdout.write(JSON.stringify({ root: cacheRoot(), entries: rows, bad: bad.length }, null, 2) + '\n');
        } else {
          for (const v of verdicts) {
            const size = formatBytes(await itemBytes(v.item));
            process.stdout.write(
              `${v.ok ? 'ok ' : 'bad'}  ${cacheLabel(v.item.path)}  (${size})${v.reason ? `: ${v.reason}` : ''}\n`,
            );
          }
          process.stdout.write(
            `${verdicts.length} entr${verdicts.length === 1 ? 'y' : 'ies'} in ${cacheRoot()}: ${verdicts.length - bad.length} ok, ${bad.length} bad${bad.length ? ' (qcrash rebuilds a bad entry when it next needs it; `qcrash cache clean --bad` removes them now)' : ''}\n`,
          );
        }
        return bad.length ? ExitCode.failed : ExitCode.pass;
      }),
    );
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
    .action(async (o: CleanOptions) => {
      const kinds = new Set<CacheKind>();
      if (o.all) for (const k of [...sealedKinds, ...otherKinds]) kinds.add(k);
      for (const k of sealedKinds) if (o[k as keyof typeof o]) kinds.add(k);
      if (o.images) kinds.add('user-images');
      if (o.builds) for (const k of buildKinds) kinds.add(k);
      if (o.accel) kinds.add('accel');
      if (!kinds.size && !o.bad) {
        throw new ConfigError(
          'say what to remove: --all, --bad, --images, --snapshots, --initramfs, --kernels, --symbols, --builds or --accel (see qcrash cache clean --help)',
        );
      }
      let chosen: CacheItem[] = [];
      for (const k of kinds) chosen.push(...(await listKind(k)));
      if (o.bad) {
        const bad = (await verifyAll()).filter((v) => !v.ok).map((v) => v.item);
        chosen.push(...bad.filter((b) => !chosen.some((c) => c.path === b.path)));
      }
      chosen = chosen.filter((c, i) => chosen.findIndex((x) => x.path === c.path) === i);
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
      process.stdout.write(
        `removed ${removed} item${removed === 1 ? '' : 's'} from ${cacheRoot()}, freed ${formatBytes(freed)}\n`,
      );
    });
}
