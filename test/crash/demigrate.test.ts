import t from 'tap';
import { deriveExpectations } from '../../harness/crash/expectations.ts';
import { recordsAt } from '../../harness/crash/writelog/record.ts';
import { parseMigrateOutput, readbackVerdict } from '../../harness/crash/step-report.ts';
import { stepCommand } from '../../harness/crash/step-command.ts';
import { workloadFindings } from '../../harness/checks/steps.ts';
import type { Step } from '../../harness/scenario/model.ts';

// chattr -e through `migrate: { to: blocks }`: qcrash-io demigrate's lines, the
// expectation that a flushed conversion back is block-mapped, and ioctl-lied
// judged against the direction asked for.
const fwd: Step = { kind: 'migrate', name: 'migrate', paths: ['/q'], recursive: true };
const back: Step = { kind: 'migrate', name: 'demigrate', paths: ['/q/a', '/q/long'], recursive: false, to: 'blocks' };
const sync: Step = { kind: 'sync', name: 'sync' };
const out = {
  fwd: 'migrate file 0 0 /q/a flags=0x80000 blocks=8\nmigrate file 0 0 /q/long flags=0x80000 blocks=600\n',
  back: 'demigrate file 0 0 /q/a flags=0x0 blocks=8\ndemigrate file -1 95 /q/long flags=0x80000 blocks=600\n',
};

t.test('the agent command and the parsed lines say the direction', async (t) => {
  t.same(stepCommand(back, 1), ['demigrate', ['0', '/q/a', '/q/long']]);
  const r = parseMigrateOutput('demigrate', out.back);
  t.same(
    r.files.map((f) => [f.path, f.to, readbackVerdict(f)]),
    [
      ['/q/a', 'blocks', 'truthful'],
      ['/q/long', 'blocks', 'truthful'],
    ],
  );
});

t.test('a conversion back that a sync covered must be block-mapped; a refused one stays owed its extents', async (t) => {
  const recs = [
    { name: 'migrate', kind: 'migrate' as const, exitCode: 0, output: out.fwd },
    { name: 'sync', kind: 'sync' as const, exitCode: 0 },
    { name: 'demigrate', kind: 'migrate' as const, exitCode: 0, output: out.back },
  ];
  const before = deriveExpectations([fwd, sync, back], recs, undefined, false).expectations;
  t.same(before.mustBeExtents, ['/q/long'], 'not yet flushed: /q/a may be either');
  t.notOk(before.mustBeDemigrated, 'nothing owed as a block map yet');
  const after = deriveExpectations(
    [fwd, sync, back, { kind: 'sync', name: 'sync-2' }],
    [...recs, { name: 'sync-2', kind: 'sync' as const, exitCode: 0 }],
    undefined,
    false,
  ).expectations;
  t.same(after.mustBeDemigrated, ['/q/a']);
  t.same(after.mustBeExtents, ['/q/long']);
});

t.test('a demigrate that returned 0 with EXTENTS_FL still set is ioctl-lied', async (t) => {
  const f = workloadFindings(
    [back],
    [{ name: 'demigrate', kind: 'migrate', exitCode: 0, output: 'demigrate file 0 0 /q/a flags=0x80000 blocks=8\n' }],
  );
  t.same(
    f.map((x) => x.code),
    ['ioctl-lied'],
  );
  t.match(f[0]!.message, /-EXTENTS_FL\) returned 0.*not block-mapped/);
});

t.test('a chattr -e not yet acknowledged may have reached the disk: its files are owed neither map', async (t) => {
  // A write-log state (log-quota-demigrate flush-36) inside the demigrate step: the sync
  // made /q/a's extents durable, then the conversion back committed before its ack.
  const acks = [
    { name: 'migrate', kind: 'migrate' as const, exitCode: 0, position: 10 },
    { name: 'sync', kind: 'sync' as const, exitCode: 0, position: 20 },
    { name: 'demigrate', kind: 'migrate' as const, exitCode: 0, startPosition: 25, position: 40 },
  ];
  const recs = [
    { name: 'migrate', kind: 'migrate' as const, exitCode: 0, output: out.fwd },
    { name: 'sync', kind: 'sync' as const, exitCode: 0 },
    { name: 'demigrate', kind: 'migrate' as const, exitCode: 0, output: out.back },
  ];
  const at = (position: number) =>
    deriveExpectations([fwd, sync, back], recordsAt(acks, recs, position), undefined, false).expectations;
  t.same(at(22).mustBeExtents, ['/q/a', '/q/long'], 'before chattr -e began: both still owed their extents');
  t.same(at(30).mustBeExtents, [], 'while it runs: either map');
  t.same(at(40).mustBeExtents, ['/q/long'], 'acknowledged: the refused file owed its extents again');
});
