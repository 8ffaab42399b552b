import { open, readFile, stat } from 'node:fs/promises';
import type { Finding } from '../findings/finding.ts';
import type { Manifest } from '../image/manifest.ts';
import { ConfigError, InfraError } from '../util/errors.ts';
import { TempDir } from '../util/tempdir.ts';
import { noExpectations } from '../crash/expectations.ts';
import { recoverWithE2fsck } from '../recovery/e2fsck.ts';
import { runOracles, type OracleOutcome } from '../checks/oracle.ts';

/**
 * `qcrash check IMAGE`: the oracles on an image a user brings. Works on a
 * copy; the user's image is never modified. Without a manifest only the
 * e2fsck oracle runs (no content to compare against).
 */
export async function checkImage(image: string, opts: { manifestFile?: string } = {}): Promise<OracleOutcome> {
  await checkIsCrashImage(image);
  let manifest: Manifest | undefined;
  if (opts.manifestFile) {
    try {
      manifest = JSON.parse(await readFile(opts.manifestFile, 'utf8')) as Manifest;
    } catch (e) {
      throw new ConfigError(`cannot read manifest ${opts.manifestFile}: ${(e as Error).message}`);
    }
  }
  await using tmp = await TempDir.create('check');
  const work = tmp.join('work.img');
  try {
    const recovered = await recoverWithE2fsck(image, work);
    // Whoever made the image may have migrated any file on it.
    return await runOracles(recovered, {
      ...(manifest ? { manifest } : {}),
      migrated: [{ path: '/', recursive: true }],
      expectations: noExpectations,
    });
  } catch (e) {
    // e2fsck names the temporary copy it ran on; the user knows their own file.
    if (e instanceof InfraError) throw new InfraError(e.message.split(work).join(image), { cause: e });
    throw e;
  }
}

/**
 * What `check` can judge: an ext3/ext4 filesystem with a journal (a crash
 * image). Anything else is the user's mistake, said plainly (exit 2),
 * instead of an e2fsck failure on a temporary copy or "no findings" for an
 * ext2 image no crash could have left.
 */
async function checkIsCrashImage(image: string): Promise<void> {
  const st = await stat(image).catch(() => undefined);
  if (!st) throw new ConfigError(`${image}: no such file`);
  if (st.isDirectory())
    throw new ConfigError(
      `${image} is a directory: qcrash check takes an image file (e.g. a case's crash.img, which \`qcrash image export CASE_DIR\` writes from a kept crash.qcow2)`,
    );
  const fh = await open(image, 'r');
  let sb: Buffer;
  try {
    sb = Buffer.alloc(1024);
    await fh.read(sb, 0, 1024, 1024);
  } finally {
    await fh.close();
  }
  if (sb.readUInt16LE(0x38) !== 0xef53)
    throw new ConfigError(`${image} is not an ext2/3/4 image (no superblock magic 0xEF53 at byte 1080)`);
  const hasJournal = (sb.readUInt32LE(0x5c) & 0x4) !== 0;
  if (!hasJournal)
    throw new ConfigError(
      `${image} has no journal (an ext2 filesystem?): qcrash check judges ext3/ext4 crash images, whose journal a crash leaves to replay`,
    );
}

/** One line per kind of finding, with how many: a badly damaged image can have thousands. */
export function findingsSummary(findings: readonly Finding[]): string {
  if (!findings.length) return 'no findings';
  const lines = new Map<string, number>();
  for (const f of findings) {
    const line = `${f.class.padEnd(10)} ${f.code.padEnd(20)} ${f.name}: ${f.message}`;
    lines.set(line, (lines.get(line) ?? 0) + 1);
  }
  return [...lines].map(([line, n]) => (n > 1 ? `${line} (x${n})` : line)).join('\n');
}
