import t from 'tap';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { debugfsBatch } from '../../harness/image/debugfs.ts';
import { parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import { runCase, type CaseEnv } from '../../harness/run/case-runner.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher, type FakeScript } from '../helpers/fake-machine.ts';
import { fakeKernel } from '../helpers/fake-suite.ts';

// What the guest reports per step, through the whole case: a scripted agent
// answers with the lines the real one prints (test/fixtures/guest/), the
// crash image is a real copy of the small-4k base image, and recovery and
// oracles are the real e2fsck and debugfs. The guest's word is never the
// verdict: the image is checked against it.
const base = await buildImage(await loadRecipe('small-4k'));
const tmp = await TempDir.create('guest-results');
t.teardown(() => tmp.remove());
const kernel: KernelInfo = fakeKernel('fake', 'fake');
const refusal = (await readFile(new URL('../fixtures/guest/migrate-no-extent-feature.txt', import.meta.url), 'utf8')).replace(
  '/f',
  '/shapes/direct-12',
);
let n = 0;

async function caseOf(steps: string, script: FakeScript, beforeOracle?: CaseEnv['beforeOracle']) {
  const scenario = await parseScenario(
    'unit.yaml',
    `recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n${steps}kill:\n  - after: sync\n`,
  );
  const [spec] = expandCases([scenario], 1);
  const env: CaseEnv = {
    machines: new FakeLauncher(() => ({ script })),
    kernel,
    initrd: '/nonexistent',
    images: new Map([['small-4k', base]]),
    keep: 'none',
    ...(beforeOracle ? { beforeOracle } : {}),
  };
  return runCase(spec!, env, join(tmp.path, `case-${++n}`));
}
const migrateDirect = '  - mount\n  - migrate: /shapes/direct-12\n  - sync\n';
const answer =
  (output: string): FakeScript =>
  (cmd) =>
    cmd === 'migrate' ? { output } : {};

t.test('a refused ioctl is no finding while the file is still block-mapped', async (t) => {
  const r = await caseOf(migrateDirect, answer(refusal));
  t.equal(r.status, 'pass', r.failing.map((f) => f.message).join('; '));
  t.same(
    r.findings.filter((f) => f.class !== 'leak'),
    [],
  );
  t.match(
    r.steps?.[1],
    { exitCode: 0, report: { kind: 'migrate', files: [{ path: '/shapes/direct-12', ret: -1, errno: 22 }] } },
    'the per-file result is kept in case.json',
  );
});

t.test('a file the ioctl refused but that the image shows extent-mapped is a finding', async (t) => {
  // The EXTENTS flag set behind the kernel's back: the mapping the oracle reads says extents (and
  // the block pointers, read as an extent header, give no bytes: the content oracle says so too).
  const r = await caseOf(
    migrateDirect,
    answer(refusal),
    async (img) => void (await debugfsBatch(img, ['set_inode_field /shapes/direct-12 flags 0x80000'], { write: true })),
  );
  t.equal(r.status, 'fail');
  t.match(
    r.failing.find((f) => f.code === 'migrated-despite-error'),
    {
      class: 'data',
      source: 'durability',
      path: '/shapes/direct-12',
      message: /the ioctl refused the migration \(errno 22\), but the file is extent-mapped/,
    },
  );
});

t.test(
  'a migration the ioctl acknowledged and a sync made durable, but the image shows block-mapped, is not-durable',
  async (t) => {
    const r = await caseOf(migrateDirect, answer('migrate file 0 0 /shapes/direct-12\n'));
    t.match(
      r.failing,
      [
        {
          class: 'data',
          code: 'not-durable',
          path: '/shapes/direct-12',
          message: /the kernel converted it and a sync, fsync or umount completed after, but the file is blocks-mapped/,
        },
      ],
      'the scripted guest never migrated it',
    );
  },
);

t.test(
  'an ioctl whose readback says block-mapped lied: ioctl-lied, and the file is held to block-mapped, not to the 0',
  async (t) => {
    // The real guest's line from known-bugs/chattr-eagain-lost on the stock kernel, moved onto a small-4k file.
    const lied = (await readFile(new URL('../fixtures/guest/migrate-lied.txt', import.meta.url), 'utf8')).replace(
      '/big/sparse',
      '/shapes/direct-12',
    );
    const r = await caseOf(migrateDirect, answer(lied));
    t.equal(r.status, 'fail');
    t.same(
      r.findings.filter((f) => f.class !== 'leak').map((f) => f.code),
      ['ioctl-lied'],
      'no not-durable',
    );
    t.match(
      r.failing,
      [
        {
          class: 'api',
          source: 'workload',
          code: 'ioctl-lied',
          path: '/shapes/direct-12',
          message: /returned 0, but FS_IOC_GETFLAGS right after says the file is not extent-mapped/,
        },
      ],
      'the lie is the only finding: the file is block-mapped as read back',
    );
    const converted = await caseOf(
      migrateDirect,
      answer(lied),
      async (img) => void (await debugfsBatch(img, ['set_inode_field /shapes/direct-12 flags 0x80000'], { write: true })),
    );
    t.match(
      converted.failing.find((f) => f.code === 'migrated-despite-error'),
      {
        class: 'data',
        message:
          /the ioctl returned 0 but the kernel read the file back block-mapped, but the file is extent-mapped after recovery/,
      },
      'a file read back block-mapped must stay so',
    );
    const truthful = await caseOf(migrateDirect, answer('migrate file 0 0 /shapes/direct-12 flags=0x80000 blocks=104\n'));
    t.notOk(
      truthful.findings.some((f) => f.code === 'ioctl-lied'),
      'a readback with FS_EXTENT_FL: no ioctl-lied',
    );
    t.match(
      truthful.failing,
      [{ code: 'not-durable', path: '/shapes/direct-12' }],
      'and the file must be extent-mapped once synced (the scripted guest never converted it)',
    );
  },
);

t.test('an ioctl return that is neither 0 nor -errno is a finding of its own', async (t) => {
  const r = await caseOf(migrateDirect, answer('migrate file 1 0 /shapes/direct-12\n'));
  t.match(r.failing, [{ class: 'kernel', source: 'workload', code: 'ioctl-bad-return', path: '/shapes/direct-12' }]);
  t.notOk(
    r.findings.some((f) => f.code === 'not-durable'),
    'and sets no mapping expectation',
  );
});

t.test('a step that fails in the guest is step-failed with its output, unless may_fail', async (t) => {
  const fails: FakeScript = (cmd) =>
    cmd === 'fsync' ? { exitCode: 1, output: 'qcrash-io: open: No such file or directory\n' } : {};
  // The path exists (the parser checks that); the scripted guest still fails the fsync.
  const r = await caseOf('  - mount\n  - fsync: /shapes/direct-12\n  - sync\n', fails);
  t.equal(r.status, 'fail');
  t.match(r.failing, [
    {
      code: 'step-failed',
      message: 'step "fsync" (fsync) failed in the guest with exit 1: qcrash-io: open: No such file or directory',
    },
  ]);
  const allowed = await caseOf('  - mount\n  - fsync: { path: /nowhere, may_fail: true }\n  - sync\n', fails);
  t.equal(allowed.status, 'pass', 'may_fail: true');
});
