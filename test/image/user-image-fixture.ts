import { createHash } from 'node:crypto';
import { mkdir, open, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runOk } from '../../harness/util/exec.ts';

/**
 * A filesystem image made the way a user makes one, outside qcrash: mkfs
 * with the extent feature off, files copied in with debugfs `write`, then
 * `tune2fs -O extent` (left out for `extent: false`). 1 KiB blocks keep
 * files with indirect and double-indirect maps small. Fixed UUIDs, hash
 * seed and time make the same bytes on every run, so the manifest and saved
 * VM state qcrash caches for it are reused across test runs.
 */
export interface UserImageOptions {
  extent?: boolean;
  journal?: boolean;
}

/** Files of the image and their bytes (what the manifest must record). */
export const userImageFiles: Record<string, Buffer> = {
  '/data/direct': bytes('direct', 5000),
  '/data/ind': bytes('ind', 100_000), // 12 direct + IND (1 KiB blocks)
  '/data/dind': bytes('dind', 300_000), // past 12 + 256 blocks: DIND
  '/data/with space/q"uote': bytes('quote', 3000),
  '/frozen': bytes('frozen', 20_000), // immutable: the kernel refuses to migrate it (EPERM)
  '/data/empty': Buffer.alloc(0),
};
/** A sparse file: data at its start and at 200 KiB, a hole between. */
export const sparseFile = {
  path: '/data/sparse',
  size: 300 * 1024,
  data: [
    [0, 4096],
    [200 * 1024, 208 * 1024],
  ] as Array<[number, number]>,
};

export function bytes(name: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let off = 0, i = 0; off < n; off += 32, i++) createHash('sha256').update(`${name}/${i}`).digest().copy(out, off);
  return out;
}

export function sparseBytes(): Buffer {
  const b = Buffer.alloc(sparseFile.size);
  for (const [a, e] of sparseFile.data) bytes(`sparse@${a}`, e - a).copy(b, a);
  return b;
}

const FIXED = '5a1e1a0e-0000-4000-8000-00000000beef';
const env = { E2FSPROGS_FAKE_TIME: '1700000000', MKE2FS_CONFIG: '/etc/mke2fs.conf' };

export async function makeUserImage(dir: string, name: string, opts: UserImageOptions = {}): Promise<string> {
  const host = join(dir, `${name}-files`);
  await mkdir(host, { recursive: true });
  const cmds = ['mkdir /data', 'mkdir "/data/with space"'];
  let i = 0;
  const put = async (path: string, data: Buffer | undefined, sparse?: typeof sparseFile) => {
    const f = join(host, `f${i++}`);
    if (sparse) {
      const fh = await open(f, 'w');
      await fh.truncate(sparse.size);
      const all = sparseBytes();
      for (const [a, e] of sparse.data) await fh.write(all, a, e - a, a);
      await fh.close();
    } else await writeFile(f, data!);
    await utimes(f, 1_700_000_000, 1_700_000_000);
    cmds.push(`write ${f} "${path.replace(/"/g, '""')}"`);
  };
  for (const [p, b] of Object.entries(userImageFiles)) await put(p, b);
  await put(sparseFile.path, undefined, sparseFile);
  cmds.push(
    'symlink /data/link ind',
    // debugfs ln adds a name and leaves the count to the caller.
    'ln /data/ind /data/ind-hardlink',
    'sif /data/ind links_count 2',
    'sif /frozen flags 0x10',
  );
  const img = join(dir, `${name}.img`);
  const features = ['^extent', '^64bit', ...(opts.journal === false ? ['^has_journal'] : [])];
  await runOk(
    'mkfs.ext4',
    [
      '-q',
      '-F',
      '-b',
      '1024',
      '-U',
      FIXED,
      '-E',
      `hash_seed=${FIXED},root_owner=0:0,nodiscard`,
      '-O',
      features.join(','),
      img,
      '16M',
    ],
    { env },
  );
  const cmdfile = join(host, 'cmds');
  await writeFile(cmdfile, cmds.join('\n') + '\n');
  await runOk('debugfs', ['-w', '-f', cmdfile, img], { env });
  if (opts.extent !== false) await runOk('tune2fs', ['-O', 'extent', img], { env });
  return img;
}
