import { execFile } from 'node:child_process';
import { access, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cacheDir } from '../../harness/util/paths.ts';
import { defaultTarball } from '../../harness/kernel/source.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

const run = promisify(execFile);

/** What kunit_parser.py made of a KTAP file (see kunit-parse.py). */
export interface KunitTest {
  name: string;
  status: 'SUCCESS' | 'FAILURE' | 'SKIPPED' | 'TEST_CRASHED' | 'NO_TESTS' | 'FAILURE_TO_PARSE_TESTS';
  expected_count: number | null;
  counts: { passed: number; failed: number; crashed: number; skipped: number; errors: number };
  log: string[];
  subtests: KunitTest[];
}

/**
 * The kernel's KTAP parser, tools/testing/kunit/ of linux-source-6.1: from a
 * work tree qcrash already unpacked in the cache when there is one, else
 * extracted from Debian's tarball into a temp dir (only that folder; about
 * 15 s of xz on one core). Dispose to remove the temp dir.
 */
export async function kunitTools(
  opts: { fromTarball?: boolean } = {},
): Promise<{ dir: string; origin: string } & AsyncDisposable> {
  if (!opts.fromTarball) {
    const work = cacheDir('kernel-work');
    for (const d of (await readdir(work).catch(() => [] as string[])).filter(
      (x) => x.startsWith('tar-') && !x.endsWith('.lock'),
    )) {
      const dir = join(work, d, 'tools', 'testing', 'kunit');
      if (
        await access(join(dir, 'kunit_parser.py')).then(
          () => true,
          () => false,
        )
      )
        return { dir, origin: dir, [Symbol.asyncDispose]: async () => {} };
    }
  }
  const tmp = await TempDir.create('kunit-tools');
  try {
    await run('tar', ['-xJf', defaultTarball, '-C', tmp.path, '--wildcards', '*/tools/testing/kunit/*'], { maxBuffer: 1 << 20 });
    const top = (await readdir(tmp.path)).find((x) => x.startsWith('linux'));
    if (!top) throw new Error(`${defaultTarball} has no linux-* folder`);
    return {
      dir: join(tmp.path, top, 'tools', 'testing', 'kunit'),
      origin: defaultTarball,
      [Symbol.asyncDispose]: () => tmp.remove(),
    };
  } catch (e) {
    await tmp.remove();
    throw e;
  }
}

const driver = new URL('./kunit-parse.py', import.meta.url).pathname;

/** Runs kunit_parser.parse_run_tests on a KTAP file; `printed` is what it printed for a human. */
export async function parseKtapFile(kunitDir: string, file: string): Promise<{ test: KunitTest; printed: string }> {
  const { stdout, stderr } = await run('python3', [driver, kunitDir, file], { maxBuffer: 64 << 20 });
  return { test: JSON.parse(stdout) as KunitTest, printed: stderr };
}
