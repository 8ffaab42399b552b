import t from 'tap';
import { readFile } from 'node:fs/promises';
import { workloadFindings } from '../../harness/checks/steps.ts';
import type { StepRecord } from '../../harness/crash/expectations.ts';
import type { Step } from '../../harness/scenario/model.ts';

// What the workload's own results say: a step that failed in the guest is a
// finding unless the scenario allows it to fail; a migrate's refused file is
// not; an ioctl return the ABI does not allow is.
const refusal = await readFile(new URL('../fixtures/guest/migrate-no-extent-feature.txt', import.meta.url), 'utf8');
const fsync: Step = { kind: 'fsync', name: 'fsync', path: '/missing' };
const migrate: Step = { kind: 'migrate', name: 'migrate', paths: ['/f', '/g'], recursive: false };
const failedFsync: StepRecord = {
  name: 'fsync',
  kind: 'fsync',
  exitCode: 1,
  output: 'qcrash-io: open: No such file or directory\n',
};

t.test('a step that fails in the guest is step-failed, with its output', async (t) => {
  t.match(workloadFindings([fsync], [failedFsync]), [
    {
      class: 'kernel',
      source: 'workload',
      code: 'step-failed',
      message: 'step "fsync" (fsync) failed in the guest with exit 1: qcrash-io: open: No such file or directory',
      detail: /No such file/,
    },
  ]);
  t.same(workloadFindings([{ ...fsync, mayFail: true }], [failedFsync]), [], 'unless the scenario says it may fail');
  t.same(workloadFindings([fsync], [{ name: 'fsync', kind: 'fsync' }]), [], 'a step the kill interrupted did not fail');
});

t.test('a refused file does not fail its migrate step; a return other than 0 or -errno is a finding of its own', async (t) => {
  t.same(
    workloadFindings([migrate], [{ name: 'migrate', kind: 'migrate', exitCode: 0, output: refusal }]),
    [],
    'EINVAL from the real kernel: no finding here',
  );
  const leaked = `migrate file 1 0 /f\n${refusal}`;
  t.match(workloadFindings([migrate], [{ name: 'migrate', kind: 'migrate', exitCode: 0, output: leaked }]), [
    {
      class: 'kernel',
      source: 'workload',
      code: 'ioctl-bad-return',
      path: '/f',
      message: '/f: FS_IOC_SETFLAGS (+EXTENTS_FL) returned 1, neither 0 nor -1 with an errno',
    },
  ]);
  t.match(
    workloadFindings([migrate], [{ name: 'migrate', kind: 'migrate', exitCode: 0, output: 'migrate file -1 0 /f\n' }]),
    [{ code: 'ioctl-bad-return' }],
    '-1 without an errno is no answer either',
  );
  t.match(
    workloadFindings([migrate], [{ name: 'migrate', kind: 'migrate', exitCode: 1, output: 'error lstat 2 /g\n' }]),
    [{ code: 'step-failed', message: /exit 1: error lstat 2 \/g/ }],
    'a path the walk could not reach fails the step',
  );
});

t.test('an ioctl its own readback contradicts is ioctl-lied (class api); one the readback confirms is nothing', async (t) => {
  const run = (output: string) => workloadFindings([migrate], [{ name: 'migrate', kind: 'migrate', exitCode: 0, output }]);
  t.match(
    run('migrate file 0 0 /f flags=0x0 blocks=2600\n'),
    [
      {
        class: 'api',
        source: 'workload',
        code: 'ioctl-lied',
        path: '/f',
        message:
          '/f: FS_IOC_SETFLAGS (+EXTENTS_FL) returned 0, but FS_IOC_GETFLAGS right after says the file is not extent-mapped: the migration did not happen',
        detail: 'step "migrate": ret 0 errno 0; flags 0x0; st_blocks 2600',
      },
    ],
    'returned 0, no FS_EXTENT_FL: the known 6.1 bug (scenarios/known-bugs/chattr-eagain-lost.yaml)',
  );
  t.same(run('migrate file 0 0 /f flags=0x80000 blocks=2600\n'), [], 'returned 0 and FS_EXTENT_FL: nothing');
  t.same(run('migrate file -1 11 /f flags=0x0 blocks=2600\n'), [], 'EAGAIN and block-mapped: nothing');
  t.match(
    run('migrate file -1 11 /f flags=0x80000 blocks=2600\n'),
    [{ code: 'ioctl-lied', message: /refused with E(AGAIN|WOULDBLOCK) \(11\), but .* is extent-mapped: the migration happened/ }],
    'a refusal of a migration that happened',
  );
  t.same(
    run('migrate file 0 0 /f flags=e5 blocks=2600\nmigrate file 0 0 /g\n'),
    [],
    'no readback (GETFLAGS failed, or an older guest): no verdict',
  );
});
