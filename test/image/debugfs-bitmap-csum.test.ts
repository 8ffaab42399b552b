import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bitmapsUnreadable, statPaths } from '../../harness/image/debugfs.ts';

// A crash state (or a failed journal replay) can leave an inode bitmap that
// does not match its checksum: plain debugfs then refuses to open the
// filesystem and every stat answers "Filesystem not open", which the content
// oracle would take for every file missing. The read falls back to -c.

t.test('a bitmap checksum mismatch: the files are still read', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qcrash-test-bmcsum-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const img = join(dir, 'fs.img');
  const src = join(dir, 'src');
  execFileSync('mkdir', ['-p', join(src, 'd')]);
  writeFileSync(join(src, 'd', 'f'), 'hello\n');
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-O', 'metadata_csum', '-d', src, img, '4M'], {
    env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' },
    stdio: 'ignore',
  });
  const out = execFileSync('dumpe2fs', [img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const ibm = Number(/Inode bitmap at (\d+)/.exec(out)![1]);
  // Flip a bit of an inode the filesystem does not use (the last of group 0): the checksum no longer matches.
  const ipg = Number(/Inodes per group:\s+(\d+)/.exec(out)![1]);
  const fd = openSync(img, 'r+');
  const at = ibm * 4096 + Math.floor((ipg - 1) / 8);
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0]! ^= 0x80;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
  const plain = execFileSync('sh', ['-c', `debugfs -R 'stat /d/f' '${img}' 2>&1`], { encoding: 'utf8' });
  t.ok(bitmapsUnreadable(plain), `plain debugfs refuses the filesystem: ${plain.trim().split('\n').slice(-2).join(' | ')}`);
  t.notMatch(plain, /Inode:/);
  const st = await statPaths(img, ['/d/f', '/d/none']);
  t.equal(st.get('/d/f')?.size, 6, 'the file is read');
  t.equal(st.get('/d/f')?.type, 'regular');
  t.equal(st.get('/d/none'), undefined, 'a missing file is still missing');
});
