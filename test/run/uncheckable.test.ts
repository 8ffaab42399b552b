import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { E2fsckCannotCheckError, runE2fsck } from '../../harness/image/e2fsck.ts';
import { InfraError } from '../../harness/util/errors.ts';
import { cannotCheckFinding } from '../../harness/checks/uncheckable.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// An image e2fsck cannot check (no superblock at all) is a typed error that
// keeps what e2fsck was run with and what it said; on a crash state it is
// one corruption finding, tagged with the recovery that left the image.
const tmp = await TempDir.create('uncheckable-test');
t.teardown(() => tmp.remove());

t.test('e2fsck on an image with no filesystem throws E2fsckCannotCheckError', async (t) => {
  const image = tmp.join('zeros.img');
  await writeFile(image, Buffer.alloc(1 << 20));
  const e = await runE2fsck(image, 'check').then(
    () => undefined,
    (x: unknown) => x,
  );
  t.ok(e instanceof E2fsckCannotCheckError, `thrown: ${String(e)}`);
  t.ok(e instanceof InfraError, 'an infrastructure error wherever it is not a finding');
  const err = e as E2fsckCannotCheckError;
  t.same(err.argv, ['-f', '-n', image]);
  t.equal(err.exitStatus & 8, 8, `operational error (exit ${err.exitStatus})`);
  t.match(err.output, /superblock|magic/i, 'what e2fsck said is kept');
  t.match(err.message, /^e2fsck -f -n .* could not check the image \(exit \d+\):/);

  const f = cannotCheckFinding(err, 'kernel');
  t.match(f, {
    class: 'corruption',
    source: 'e2fsck',
    code: 'e2fsck-cannot-check',
    name: 'e2fsck-cannot-check',
    recovery: 'kernel',
    message: 'e2fsck could not check the image recovered by kernel',
  });
  t.equal(f.detail, err.message.slice(0, 4000));
});
