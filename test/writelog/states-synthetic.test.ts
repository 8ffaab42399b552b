import t from 'tap';
import { openSync, closeSync, readSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { WriteLog, LogFlag, writeWriteLog, type NewLogEntry } from '../../harness/crash/writelog/format.ts';
import { digestLog } from '../../harness/crash/writelog/digest.ts';
import { generateStates, type PlannedState } from '../../harness/crash/writelog/states.ts';
import type { AckPosition } from '../../harness/crash/writelog/record.ts';
import { forEachState } from '../../harness/crash/writelog/materialize.ts';
import { TempDir } from '../../harness/util/tempdir.ts';

// The states generator on small synthetic logs with what QEMU never logs but
// Linux dm-log-writes does: writes that carry FUA, and flushes that carry
// data (REQ_PREFLUSH with a payload, with and without FUA).
const tmp = await TempDir.create('writelog-synthetic-test');
t.teardown(() => tmp.remove());
const block = 8; // sectors per 4 KiB write
const base = tmp.join('base.img');
writeFileSync(base, Buffer.alloc(128 * 512));

const write = (slot: number, flags = 0): NewLogEntry & { data: Buffer } => ({
  sector: slot * block,
  nrSectors: block,
  flags,
  data: randomBytes(block * 512),
});
const flush = (): NewLogEntry => ({ sector: 0, nrSectors: 0, flags: LogFlag.flush });

async function open(
  name: string,
  entries: NewLogEntry[],
): Promise<{ log: WriteLog; digest: Awaited<ReturnType<typeof digestLog>> }> {
  const path = tmp.join(name);
  await writeWriteLog(path, 512, entries);
  const log = await WriteLog.open(path);
  t.teardown(() => log.close());
  return { log, digest: await digestLog(log, base) };
}

/** The 4 KiB at `slot` of each state's image. */
async function slotOf(log: WriteLog, states: readonly PlannedState[], slot: number): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  await forEachState(log, base, states, { workDir: tmp.path, jobs: 1, fork: 'copy' }, async (s, image) => {
    const fd = openSync(image, 'r');
    const b = Buffer.alloc(block * 512);
    readSync(fd, b, 0, b.length, slot * block * 512);
    closeSync(fd);
    out.set(s.name, b);
  });
  return out;
}

t.test('FUA writes and flushes that carry data', async (t) => {
  const a = write(0);
  const b = write(1);
  const c = write(2, LogFlag.fua); // durable once complete
  const d = write(3);
  const e = write(4, LogFlag.flush | LogFlag.fua); // a jbd2 commit block: preflush, then the block with FUA
  const f = write(5);
  const g = write(6, LogFlag.flush); // preflush with a payload, no FUA
  const h = write(7);
  const { log, digest } = await open('fua.log', [a, flush(), b, c, d, e, f, g, h, flush()]);
  const plan = generateStates(digest, [], { perEpoch: 100, randomSubsets: 8, torn: true, tornUnitSectors: 4 });
  const byName = new Map(plan.states.map((s) => [s.name, s]));

  t.same(
    plan.epochs.map((x) => [x.base, x.end, x.writes]),
    [
      [0, 1, 1],
      [2, 5, 3],
      [6, 7, 1],
      [8, 9, 1],
    ],
    'each flush entry closes an epoch, data or not; its own data is no write of the epoch',
  );

  const fua = plan.states.find((s) => s.variant === 'fua');
  t.ok(fua, 'a prefix state at the FUA write');
  t.equal(fua?.position, 4, 'it stands just after the FUA write');
  t.same(fua?.apply, [], 'a prefix state: the log replayed to it');

  const epoch2 = plan.states.filter((s) => s.kind === 'power-loss' && s.epoch === 2);
  t.ok(epoch2.length >= 4, `epoch 2 has power-loss states (${epoch2.length})`);
  for (const s of epoch2) {
    if (s.position > 3)
      t.notOk(
        s.dropped.some((w) => w.index === 3),
        `${s.name}: the FUA write, complete at ${s.position}, is never lost`,
      );
    t.notOk(
      s.apply.some((w) => w.index === 5),
      `${s.name}: the commit block (the flush's data) is not in the epoch it closes`,
    );
  }
  t.ok(
    epoch2.some((s) => s.variant === 'cut' && s.position === 3 && s.dropped.some((w) => w.index === 3)),
    'power failing before the FUA write completed loses it',
  );
  t.ok(
    epoch2.some((s) => s.variant === 'torn' && s.torn?.index === 3),
    'and power failing inside it tears it',
  );

  const pre = byName.get('flush-2-preflush');
  t.ok(pre, 'a state after the preflush, before the data of the flush that carries it');
  t.equal(pre?.position, 5);
  const commit = byName.get('flush-2');
  t.equal(commit?.position, 6, 'the flush prefix includes the data');

  const eSlot = await slotOf(log, plan.states, 4);
  t.same(eSlot.get('flush-2-preflush'), Buffer.alloc(block * 512), 'the commit block is not in the state after its preflush');
  t.same(eSlot.get('flush-2'), e.data, 'it is in the flush prefix');
  for (const s of plan.states.filter((x) => x.epoch >= 3))
    t.same(eSlot.get(s.name), e.data, `${s.name}: a later epoch starts with the commit block on the disk`);
  for (const s of epoch2)
    t.same(eSlot.get(s.name), Buffer.alloc(block * 512), `${s.name}: a power-loss state of its epoch never has it`);

  // A flush's payload without FUA is taken as fstests takes it: part of the prefix at the flush, never dropped
  // later (the disk could still lose it until the next flush: states that are not generated, none that are wrong).
  const gSlot = await slotOf(
    log,
    plan.states.filter((s) => s.epoch === 4),
    6,
  );
  t.ok(gSlot.size > 0, 'the last epoch has states');
  for (const [name, bytes] of gSlot) t.same(bytes, g.data, `${name}: the flush's payload landed`);
  t.notOk(
    plan.states.some((s) => s.dropped.some((w) => w.index === 7)),
    'and is never among the dropped',
  );
});

t.test('dedupe keys on the image and what the state is held to', async (t) => {
  const a = write(0);
  const noop = { sector: 9 * block, nrSectors: block, flags: 0, data: Buffer.alloc(block * 512) }; // the base's own bytes: the image stays as it was
  const { digest } = await open('dedupe.log', [a, flush(), noop, flush(), write(1)]);
  const ack = (name: string, kind: AckPosition['kind'], position: number): AckPosition => ({ name, kind, exitCode: 0, position });

  const fsynced = generateStates(digest, [ack('fsync', 'fsync', 3)], { perEpoch: 0 });
  t.same(
    fsynced.states.map((s) => s.name),
    ['flush-1', 'ack-fsync', 'end'],
    'the same image after an fsync acknowledgement is a state of its own',
  );
  t.not(fsynced.states[0]!.acksBefore.includes('fsync'), true, 'the first knows nothing of the fsync');
  t.same(fsynced.states[1]!.acksBefore, ['fsync'], 'the second is held to it');
  t.equal(fsynced.states[0]!.key, fsynced.states[1]!.key, 'one image');
  t.equal(fsynced.counts.duplicates, 1, 'the flush prefix after it, same image and same acks, is the duplicate');

  const slept = generateStates(digest, [ack('sleep', 'sleep', 3)], { perEpoch: 0 });
  t.same(
    slept.states.map((s) => s.name),
    ['flush-1', 'end'],
    'an acknowledgement that claims nothing about the disk makes no new state',
  );

  const undeduped = generateStates(digest, [ack('fsync', 'fsync', 3)], { perEpoch: 0, dedupe: false });
  t.ok(undeduped.states.length > fsynced.states.length, 'dedupe off keeps them all');
});
