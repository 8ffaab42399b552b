import { access, mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { MissingToolError } from '../util/errors.ts';
import { cacheDir, projectRoot } from '../util/paths.ts';
import { hashJson, sha256 } from '../util/hash.ts';

/** Headers qcrash-layout is compiled against, with the Debian package that has each. */
export const layoutToolHeaders = [
  { header: '/usr/include/ext2fs/ext2fs.h', debianPackage: 'libext2fs-dev' },
  { header: '/usr/include/et/com_err.h', debianPackage: 'comerr-dev' },
] as const;

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/**
 * A host program of vm-images/tools/ (NAME.c), compiled with the machine's
 * gcc the first time it is needed and cached by its source, the compiler
 * and the headers it names (cache/tools/NAME-HASH/NAME).
 */
async function hostTool(
  name: string,
  headers: readonly { header: string }[] = [],
  libs: readonly string[] = [],
): Promise<string> {
  const source = join(projectRoot, 'vm-images', 'tools', `${name}.c`);
  const gcc = await tool('gcc');
  const src = await readFile(source);
  const headerHashes = await Promise.all(headers.map(async (h) => sha256(await readFile(h.header))));
  const hash = hashJson({ src: sha256(src), gcc, headers: headerHashes }).slice(0, 16);
  const dir = cacheDir('tools', `${name}-${hash}`);
  const bin = join(dir, name);
  if (await exists(bin)) return bin;
  await mkdir(dir, { recursive: true });
  const partial = `${bin}.${process.pid}.partial`;
  await runOk(gcc, ['-O2', '-Wall', '-o', partial, source, ...libs]);
  await rename(partial, bin);
  return bin;
}

/**
 * The host program that makes exact layouts (vm-images/tools/qcrash-layout.c),
 * compiled against the machine's libext2fs the first time a recipe needs it
 * and cached by the source, the compiler and the library headers.
 */
export async function layoutTool(): Promise<string> {
  for (const h of layoutToolHeaders) if (!(await exists(h.header))) throw new MissingToolError(h.header, h.debianPackage);
  return hostTool('qcrash-layout', layoutToolHeaders, ['-lext2fs', '-lcom_err']);
}

/**
 * The bench's stand-in for fstests' `replay-log` (vm-images/tools/qcrash-replay-log.c):
 * a process per state replaying entries 0..N-1 with that tool's I/O pattern.
 */
export async function replayLogTool(): Promise<string> {
  return hostTool('qcrash-replay-log');
}
