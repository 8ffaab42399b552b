import t from 'tap';
import { stat, statfs } from 'node:fs/promises';
import { stockKernel } from '../../harness/kernel/stock.ts';
import { buildInitramfs } from '../../harness/guest/initramfs.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { createCaseDisk } from '../../harness/image/disk.ts';
import { Vm } from '../../harness/vm/machine/vm.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { sha256File } from '../../harness/util/hash.ts';
import { defaultAllowance } from '../../harness/findings/finding.ts';
import { WriteLog, entryKind, isFlush } from '../../harness/crash/writelog/format.ts';
import { runRecordedWorkload, ackPositions } from '../../harness/crash/writelog/record.ts';
import { replayPrefix } from '../../harness/crash/writelog/replay.ts';
import { digestLog } from '../../harness/crash/writelog/digest.ts';
import { generateStates, epochWrites } from '../../harness/crash/writelog/states.ts';
import { forEachState, EpochStates } from '../../harness/crash/writelog/materialize.ts';
import { e2fsckVerdict, type StateOracleContext } from '../../harness/run/state-verdict.ts';
import { minimizeDropped } from '../../harness/crash/writelog/minimize.ts';
import { WriteExplainer } from '../../harness/crash/writelog/explain.ts';
import { runE2fsck } from '../../harness/image/e2fsck.ts';
import { benchWritelog } from '../../harness/bench/writelog-bench.ts';
import { qemuPids } from '../helpers/env.ts';
import { recordedSteps } from './workload.ts';
import { plantCommitBeforeJournalBlock } from './plant.ts';

// One real run recorded through QEMU's blklogwrites (stock kernel, the
// initramfs and agent, the small-4k recipe), then everything on the host:
// the reader, replay equivalence, the e2fsck oracles on every flush prefix,
// and a planted write-ordering bug found, minimised and explained.
const kernel = await stockKernel();
const initrd = (await buildInitramfs(kernel)).path;
const base = await buildImage(await loadRecipe('small-4k'));
const tmp = await TempDir.create('writelog-vm-test');
t.teardown(() => tmp.remove());

const logPath = tmp.join('workload.log');
const disk = await createCaseDisk(base.path, tmp.join('disk.img'));
let vmDir = '';
const recorded = await (async () => {
  await using vm = await Vm.launch({ kernel, initrd, disk: { ...disk, writeLog: logPath } });
  vmDir = vm.dir.path;
  // `return await`: the VM is disposed when this block ends, so the workload must have finished by then.
  return await runRecordedWorkload(vm, recordedSteps, 1, logPath, { end: 'kill' });
})();
const log = await WriteLog.open(logPath);
t.teardown(() => log.close());
const acks = ackPositions(log, recorded.acks);
const ctx: StateOracleContext = {
  manifest: base.manifest,
  steps: recordedSteps,
  records: recorded.records,
  acks,
  allow: defaultAllowance,
};

t.test('the run is recorded: every step succeeded, QEMU is gone, the log reads back whole', async (t) => {
  t.same(
    recorded.acks.map((a) => a.exitCode),
    recordedSteps.map(() => 0),
    'every step exited 0',
  );
  t.same(qemuPids(vmDir), [], 'no QEMU left');
  t.ok(log.entries.length > 20, `${log.entries.length} entries`);
  t.equal(log.tornTail, false, 'stop + quit drains the I/O: no torn tail');
  t.equal(log.superblockEntries, log.entries.length);
  t.ok(log.flushCount >= 5, `${log.flushCount} flushes: each sync, fsync and the umount flush`);
  t.ok(
    log.entries.every((e) => entryKind(e) === 'write' || entryKind(e) === 'flush'),
    'writes and flushes only: no discard, no FUA, no write-zeroes interleaving',
  );
});

t.test('step acks map to log positions after the flushes the steps waited for', async (t) => {
  for (let i = 1; i < acks.length; i++)
    t.ok(acks[i]!.position >= acks[i - 1]!.position, `${acks[i]!.name} is not before ${acks[i - 1]!.name}`);
  for (const name of ['sync', 'fsync-ind', 'fsync-new', 'umount']) {
    const a = acks.find((x) => x.name === name)!;
    const flushes = log.entries.slice(a.startPosition, a.position).filter(isFlush);
    t.ok(flushes.length > 0, `${name}: a flush between its start marker (${a.startPosition}) and its ack (${a.position})`);
  }
  t.equal(acks.find((x) => x.name === 'umount')!.position, log.entries.length, 'nothing is written after the umount');
});

t.test('replaying the whole log onto the base gives exactly the disk QEMU wrote', async (t) => {
  await replayPrefix(log, base.path, tmp.join('replayed.img'), log.entries.length);
  t.equal(await sha256File(tmp.join('replayed.img')), await sha256File(disk.path));
});

t.test('every flush prefix passes the e2fsck recovery with only leak findings', async (t) => {
  const digest = await digestLog(log, base.path);
  const plan = generateStates(digest, acks, { perEpoch: 0 });
  const flushes = plan.states.filter((s) => s.variant === 'flush');
  t.ok(flushes.length >= 5, `${flushes.length} distinct flush states`);
  const started = performance.now();
  const out = await forEachState(log, base.path, flushes, { workDir: tmp.path, jobs: 2 }, (s, image) =>
    e2fsckVerdict(s, image, `${image}.recovery`, ctx),
  );
  t.comment(`${flushes.length} flush states checked in ${Math.round(performance.now() - started)} ms (2 jobs)`);
  for (const o of out) {
    t.equal(o.error, undefined, `${o.state.name}: checked`);
    t.same(
      o.result?.failing.map((f) => `${f.class}:${f.code}`),
      [],
      `${o.state.name}: nothing outside the allowance`,
    );
  }
  // The durability oracle is live: states after the sync ack must show dind-first migrated.
  const afterSync = out.filter((o) => o.state.acksBefore.includes('sync'));
  t.ok(afterSync.length > 0);
  for (const o of afterSync)
    t.ok(o.result?.expectations.mustBeExtents.includes('/shapes/dind-first'), `${o.state.name}: expects the synced migration`);
  const beforeSync = out.filter((o) => !o.state.acksBefore.includes('sync'));
  for (const o of beforeSync)
    t.notOk(o.result?.expectations.mustBeExtents.includes('/shapes/dind-first'), `${o.state.name}: expects nothing of it yet`);
});

t.test('explain names what the recorded writes held: journal blocks, fixed metadata, file data, directories', async (t) => {
  const explainer = await WriteExplainer.create(log, disk.path, base.path);
  const digest = await digestLog(log, base.path);
  const all = epochWrites(digest, { base: 0, end: log.entries.length });
  const ex = await explainer.explain(all);
  const parts = ex.flatMap((e) => e.parts);
  const kinds = new Set(parts.map((p) => p.role.kind));
  for (const k of [
    'jbd2-superblock',
    'jbd2-descriptor',
    'jbd2-commit',
    'journal-data',
    'superblock',
    'block-bitmap',
    'inode-table',
    'data',
    'directory',
  ] as const)
    t.ok(kinds.has(k), `some write holds a ${k} block`);
  t.ok(
    parts.some((p) => p.role.kind === 'data' && p.role.path === '/new-file'),
    "the new file's data, named by path (icheck + ncheck)",
  );
  t.notOk(kinds.has('unowned'), 'every block is accounted for');
  t.ok(
    parts.filter((p) => p.role.kind === 'journal-data').every((p) => p.role.home !== undefined),
    'every journal copy names its home block',
  );
});

t.test('checks in place (e2undo) see the same images and give the same verdicts as checks on copies', async (t) => {
  const digest = await digestLog(log, base.path);
  const plan = generateStates(digest, acks, { perEpoch: 2, seed: 3 });
  t.ok(plan.counts.powerLoss > 0 && plan.counts.prefix > 0);
  const check = async (s: { position: number }, image: string, scope: { undoFile(): string | undefined }) => {
    const before = await sha256File(image);
    const jo = await runE2fsck(image, 'journal-only', { undoFile: scope.undoFile() });
    const fn = await runE2fsck(image, 'check');
    return { before, verdict: `${jo.exit.code}/${fn.exit.code}/${fn.problems.map((p) => p.codeHex).join(',')}` };
  };
  const copies = await forEachState(log, base.path, plan.states, { workDir: tmp.path, jobs: 2 }, check);
  const inPlace = await forEachState(log, base.path, plan.states, { workDir: tmp.path, jobs: 2, fork: 'in-place' }, check);
  for (const [i, s] of plan.states.entries()) {
    t.equal(inPlace[i]!.error, undefined, `${s.name}: checked in place`);
    t.equal(inPlace[i]!.result?.before, copies[i]!.result?.before, `${s.name}: the same image (each earlier check was undone)`);
    t.equal(inPlace[i]!.result?.verdict, copies[i]!.result?.verdict, `${s.name}: the same e2fsck verdict`);
  }
});

t.test('the write-log bench runs its three paths on the same states with the same results', async (t) => {
  const r = await benchWritelog({ log: logPath, base: base.path, jobs: 2, limit: 6 });
  t.equal(r.states, 6);
  t.equal(r.sameResults, true, 'e2fsck exit codes and problem codes agree state by state');
  t.same(r.imagesVerified, { checked: 3, identical: 3 }, 'the fstests loop and the cursor build the same images');
  for (const p of [r.fstestsLoop, r.incremental, r.inPlace]) {
    t.ok(p.statesPerMinute > 0 && p.states === 6);
    // The two e2fsck runs are timed inside a job's time for the state, which the wall time per state times the jobs bounds.
    t.ok(
      p.checksMsPerState > 0 && p.checksMsPerState <= p.msPerState * 2 + 0.1,
      `checks ${p.checksMsPerState} ms of a job's ${p.msPerState * 2}`,
    );
  }
  // Where `qcrash run` keeps a unit's working images: in memory when /dev/shm has room and QCRASH_TMPDIR does not choose.
  // TempDir asks for twice the bench's bound (3 images a job and 3 more) free.
  const bound = 2 * (3 * 2 + 3) * (await stat(base.path)).size;
  const shmRoom =
    !process.env.QCRASH_TMPDIR &&
    (await statfs('/dev/shm').then(
      (f) => f.bavail * f.bsize >= bound,
      () => false,
    ));
  t.equal(r.storage, shmRoom ? 'memory' : 'disk', 'every path kept its images where qcrash run keeps working images');
  t.comment(
    JSON.stringify({
      fstests: r.fstestsLoop,
      copy: r.incremental,
      inPlace: r.inPlace,
      ratio: r.ratio,
      ratioInPlace: r.ratioInPlace,
    }),
  );
});

t.test('a planted ordering bug is found by a power-loss state, minimised to the writes that matter and explained', async (t) => {
  const planted = await plantCommitBeforeJournalBlock(log, base.path, tmp.join('planted.log'), { mergeNext: true });
  t.comment(
    `planted: commit block ${planted.commitBlock} of transaction ${planted.transaction} before journal block ${planted.journalBlock} (copy of block ${planted.homeBlock})`,
  );
  await using plog = await WriteLog.open(planted.path);
  const digest = await digestLog(plog, base.path);
  const plan = generateStates(digest, [], { perEpoch: 16, prefixes: 'none' });
  const commitEntry = plog.entries.find((e) => e.sector * 512 === planted.commitBlock * 4096)!;
  const epoch = plan.epochs.find((e) => e.base <= commitEntry.index && commitEntry.index < e.end)!;
  const victim = plog.entries.find((e) => e.index > commitEntry.index && e.sector * 512 === planted.journalBlock * 4096)!;
  t.ok(victim.index < epoch.end, 'the journal block now comes after its commit, in the same epoch');
  const candidates = plan.states.filter((s) => s.epoch === epoch.epoch);
  t.ok(candidates.length >= 3, `${candidates.length} power-loss states in that epoch`);
  // No acks: a power-loss state is judged by e2fsck and the content oracle alone here.
  const noAcks: StateOracleContext = { ...ctx, acks: [], records: recorded.records.map(({ name, kind }) => ({ name, kind })) };
  const out = await forEachState(plog, base.path, candidates, { workDir: tmp.path, jobs: 2 }, (s, image) =>
    e2fsckVerdict(s, image, `${image}.recovery`, noAcks),
  );
  const failing = out.filter((o) => (o.result?.failing.length ?? 0) > 0);
  t.comment(
    out
      .map(
        (o) =>
          `${o.state.name}: ${o.error ?? ([...new Set(o.result!.failing.map((f) => `${f.class}:${f.code}`))].join(', ') || 'pass')}`,
      )
      .join('\n'),
  );
  // Merging the next epoch (mergeNext) also lets the checkpoint writes land without their commit: a
  // seeded subset that loses the commit but keeps a checkpoint write may fail too. The planted bug's
  // states are those that lost the journal block and kept the commit.
  const plantedFailures = failing.filter(
    (o) => o.state.dropped.some((d) => d.index === victim.index) && !o.state.dropped.some((d) => d.index === commitEntry.index),
  );
  t.ok(plantedFailures.length > 0, 'a power-loss state that lost the journal block but kept the commit fails the oracle');
  t.ok(
    plantedFailures[0]!.result!.failing.some((f) => f.class === 'corruption'),
    'e2fsck reports corruption after replaying the incomplete transaction',
  );

  const state = plantedFailures.sort((a, b) => b.state.dropped.length - a.state.dropped.length)[0]!.state;
  t.ok(
    state.dropped.length >= 3,
    `${state.name} lost ${state.dropped.length} writes: the checkpoint writes after the journal block too`,
  );
  const writes = epochWrites(digest, epoch);
  await using epochStates = await EpochStates.create(plog, base.path, epoch.base, writes, tmp.path);
  const fails = epochStates.oracle(
    async (image) => (await e2fsckVerdict(state, image, `${image}.recovery`, noAcks)).failing.length > 0,
  );
  const m = await minimizeDropped(state.dropped, writes, fails);
  t.comment(`minimised ${state.name} (${state.dropped.length} dropped) in ${m.tests} oracle calls`);
  t.same(
    m.dropped.map((d) => d.index),
    [victim.index],
    'minimal: only the journal block that never arrived',
  );
  t.ok(
    m.needed.some((w) => w.index === commitEntry.index),
    'and the commit block that did arrive is needed',
  );

  const image = await epochStates.image(m.dropped);
  const explainer = await WriteExplainer.create(plog, image, base.path);
  const [lost, ...needed] = await explainer.explain([...m.dropped, ...m.needed]);
  t.comment(`lost: ${lost!.summary}\n${needed.map((n) => `needed: ${n.summary}`).join('\n')}`);
  t.match(
    lost!.parts,
    [
      {
        role: {
          kind: 'journal-data',
          transaction: planted.transaction,
          home: { block: planted.homeBlock, role: { kind: 'block-bitmap' } },
        },
      },
    ],
    'the lost write: transaction T’s copy of the block bitmap',
  );
  t.ok(
    needed.some((n) => n.parts.some((p) => p.role.kind === 'jbd2-commit' && p.role.transaction === planted.transaction)),
    'a needed write: the commit block of T',
  );
  t.ok(
    needed.some((n) => n.parts.some((p) => p.role.kind === 'jbd2-descriptor' && p.role.transaction === planted.transaction)),
    'a needed write: the descriptor of T',
  );
});
