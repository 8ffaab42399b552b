import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelBuildId, readFragment } from '../../harness/kernel/build.ts';

// A built kernel is cached under its id: an edited comment in a config
// fragment must not send every user through a 20-minute rebuild, and an
// edited option must.
t.test('a kernel id follows the options a fragment sets, not its comments', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'build-id-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const write = async (name: string, text: string) => {
    await writeFile(join(dir, name), text);
    return readFragment(join(dir, name));
  };
  const source = { id: 'tar-0123456789ab', base: 'b5a8fed' };
  const a = await write('a.config', '# why\nCONFIG_SMP=y\n# CONFIG_QUOTA is not set\n');
  const commented = await write('b.config', '# why, said better\n\nCONFIG_SMP=y\n# another note\n# CONFIG_QUOTA is not set\n');
  const changed = await write('c.config', '# why\nCONFIG_SMP=y\nCONFIG_QUOTA=y\n');
  t.equal(kernelBuildId(source, [], [a]), kernelBuildId(source, [], [commented]), 'comments and blank lines do not change it');
  t.not(kernelBuildId(source, [], [a]), kernelBuildId(source, [], [changed]), 'an option does');
  t.not(kernelBuildId(source, [{ sha256: 'ab' }], [a]), kernelBuildId(source, [], [a]), 'a patch does');
  t.match(kernelBuildId(source, [], [a]), /^build-[0-9a-f]{16}$/);
});
