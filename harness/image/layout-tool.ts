import { access, mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { runOk } from '../util/exec.ts';
import { tool } from '../util/tools.ts';
import { MissingToolError } from '../util/errors.ts';
import { cacheDir, projectRoot } from '../util/paths.ts';
import { hashJson, sha256 } from '../util/hash.ts';

export const layoutToolSource = join(projectRoot, 'vm-images', 'tools', 'qcrash-layout.c');

/** Headers qcrash-layout is compiled against, with the Debian package that has each. */
export const layoutToolHeaders = [
  { header: '/usr/include/ext2fs/ext2fs.h', debianPackage: 'libext2fs-dev' },
  { header: '/usr/include/et/com_err.h', debianPackage: 'comerr-dev' },
] as const;

/**
 * The host program that makes exact layouts (vm-images/tools/qcrash-layout.c),
 * compiled against the machine's libext2fs the first time a recipe needs it
 * and cached by the source, the compiler and the library headers.
 */
export async function layoutTool(): Promise<string> {
  for (const h of layoutToolHeaders) {
    if (
      !(await access(h.header).then(
        () => true,
        () => false,
      ))
    )
      throw new MissingToolError(h.header, h.debianPackage);
  }
  const gcc = await tool('gcc');
  const src = await readFile(layoutToolSource);
  const headers = await Promise.all(layoutToolHeaders.map(async (h) => sha256(await readFile(h.header))));
  const hash = hashJson({ src: sha256(src), gcc, headers }).slice(0, 16);
  const dir = cacheDir('tools', `qcrash-layout-${hash}`);
  const bin = join(dir, 'qcrash-layout');
  if (
    await access(bin).then(
      () => true,
      () => false,
    )
  )
    return bin;
  await mkdir(dir, { recursive: true });
  const partial = `${bin}.${process.pid}.partial`;
  await runOk(gcc, ['-O2', '-Wall', '-o', partial, layoutToolSource, '-lext2fs', '-lcom_err']);
  await rename(partial, bin);
  return bin;
}
