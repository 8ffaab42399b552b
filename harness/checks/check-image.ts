import { readFile } from 'node:fs/promises';
import type { Finding } from '../findings/finding.ts';
import type { Manifest } from '../image/manifest.ts';
import { ConfigError } from '../util/errors.ts';
import { TempDir } from '../util/tempdir.ts';
import { noExpectations } from '../crash/expectations.ts';
import { recoverWithE2fsck } from '../recovery/e2fsck.ts';
import { runOracles, type OracleOutcome } from './oracle.ts';

/**
 * `qcrash check IMAGE`: the oracles on an image a user brings. Works on a
 * copy; the user's image is never modified. Without a manifest only the
 * e2fsck oracle runs (no content to compare against).
 */
export async function checkImage(image: string, opts: { manifestFile?: string } = {}): Promise<OracleOutcome> {
  let manifest: Manifest | undefined;
  if (opts.manifestFile) {
    try {
      manifest = JSON.parse(await readFile(opts.manifestFile, 'utf8')) as Manifest;
    } catch (e) {
      throw new ConfigError(`cannot read manifest ${opts.manifestFile}: ${(e as Error).message}`);
    }
  }
  await using tmp = await TempDir.create('check');
  const recovered = await recoverWithE2fsck(image, tmp.join('work.img'));
  // Whoever made the image may have migrated any file on it.
  return await runOracles(recovered, { ...(manifest ? { manifest } : {}), migrated: [{ path: '/', recursive: true }], expectations: noExpectations });
}

export function findingsSummary(findings: readonly Finding[]): string {
  if (!findings.length) return 'no findings';
  return findings.map((f) => `${f.class.padEnd(10)} ${f.code.padEnd(20)} ${f.name}: ${f.message}`).join('\n');
}
