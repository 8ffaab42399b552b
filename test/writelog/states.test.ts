import t from 'tap';
import { openSync, closeSync, writeSync, ftruncateSync, writeFileSync, readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { WriteLog, isFlush, writeWriteLog } from '../../harness/crash/writelog/format.ts';
import { digestLog } from '../../harness/crash/writelog/digest.ts';
import { generateStates, epochWrites, type PlannedState } from '../../harness/crash/writelog/states.ts';
import { ackPositions } from '../../harness/crash/writelog/record.ts';
import { forEachState } from '../../harness/crash/writelog/materialize.ts';
import { replayPrefix } from '../../harness/crash/writelog/replay.ts';
import { sha256File } from '../../harness/util/hash.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { fixtureAcks, fixtureLog } from './fixture.ts';

// The generator on the recorded fixture log. The base is a stand-in (32 MiB
// with a few random blocks where the log writes): which states exist, their
// names and budgets do not depend on what the base holds, and the images the
// tests build from it are compared with each other only.
const tmp = await TempDir.create('writelog-states-test');
t.teardown(() => tmp.remove());
const logPath = fixtureLog(tmp.join('real.log'));
const log = await WriteLog.open(logPath);
t.teardown(() => log.close());
const base = tmp.join('base.img');
{
  const fd = openSync(base, 'w');
  ftruncateSync(fd, 32 << 20);
  // Some base blocks equal to nothing in the log, some to a logged write (a no-op write must not make a new state).
  for (const e of log.entries.slice(0, 12))
    if (e.dataBytes) writeSync(fd, randomBytes(e.dataBytes), 0, e.dataBytes, e.sector * 512);
  const noop = log.entries.find((e) => e.index > 20 && e.dataBytes)!;
  writeSync(fd, await log.readData(noop), 0, noop.dataBytes, noop.sector * 512);
  closeSync(fd);
}
const digest = await digestLog(log, base);

function groupBy<T, K>(xs: readonly T[], key: (x: T) => K): Map<K, T[]> {
  const m = new Map<K, T[]>();
  for (const x of xs) m.set(key(x), [...(m.get(key(x)) ?? []), x]);
  return m;
}
const acks = ackPositions(log, fixtureAcks().acks);

t.test('prefix states: one per flush that changed something, one per step ack inside an epoch', async (t) => {
  const plan = generateStates(digest, acks, { perEpoch: 0 });
  t.equal(plan.counts.powerLoss, 0);
  t.equal(plan.epochs.length, log.flushCount, 'the log ends with a flush: one epoch per flush, no open end');
  const flushStates = plan.states.filter((s) => s.variant === 'flush');
  const nonEmpty = plan.epochs.filter((e) => e.writes > 0).length;
  t.equal(flushStates.length, nonEmpty, 'an epoch without writes leaves the same image as the flush before it: checked once');
  for (const s of flushStates) {
    t.ok(isFlush(log.entries[s.position - 1]!), `${s.name} stands just after its flush entry`);
    t.equal(s.base, s.position, 'a prefix state is the working image itself');
    t.same(s.apply, []);
  }
  t.equal(new Set(plan.states.map((s) => s.key)).size, plan.states.length, 'no two states are the same image');
  const syncAck = acks.find((a) => a.name === 'sync')!;
  for (const s of plan.states)
    t.same(
      s.acksBefore,
      acks.filter((a) => a.position <= s.position).map((a) => a.name),
      `${s.name}: the acks at or before it`,
    );
  t.ok(
    plan.states.some((s) => s.position >= syncAck.position && s.acksBefore.includes('sync')),
    'states after the sync know it completed',
  );
  t.ok(
    plan.states.some((s) => s.position < syncAck.position && !s.acksBefore.includes('sync')),
    'states before it do not',
  );
});

t.test('power-loss states respect the per-epoch and total budgets', async (t) => {
  const all = generateStates(digest, acks, { perEpoch: 1000, randomSubsets: 4, torn: true });
  const byEpoch = (s: PlannedState[]) =>
    groupBy(
      s.filter((x) => x.kind === 'power-loss'),
      (x) => x.epoch,
    );
  t.ok(all.counts.powerLoss > 20, `the fixture has power-loss candidates (${all.counts.powerLoss})`);
  t.ok(
    [...byEpoch(all.states).values()].some((l) => l.length > 2),
    'some epoch has more than 2',
  );
  const per2 = generateStates(digest, acks, { perEpoch: 2, torn: true });
  for (const [e, l] of byEpoch(per2.states)) t.ok(l.length <= 2, `epoch ${e}: ${l.length} <= 2`);
  t.ok(
    per2.counts.overBudget >= all.counts.powerLoss - per2.counts.powerLoss,
    'what the budget left out is counted (with duplicates it never examined)',
  );
  t.equal(all.counts.overBudget, 0, 'an unlimited budget leaves nothing out');
  const capped = generateStates(digest, acks, { perEpoch: 8, total: 15, torn: true });
  t.equal(capped.states.length, 15);
  t.equal(
    capped.states.filter((s) => s.kind === 'prefix').length,
    generateStates(digest, acks, { perEpoch: 0 }).states.length,
    'prefix states come first',
  );
  const tiny = generateStates(digest, acks, { perEpoch: 8, total: 4 });
  t.equal(tiny.states.length, 4, 'a total below the prefix count thins the prefix states');
  t.ok(tiny.states.every((s) => s.kind === 'prefix'));
  t.equal(
    tiny.states.at(-1)!.position,
    generateStates(digest, acks, { perEpoch: 0 }).states.at(-1)!.position,
    'and keeps the last',
  );
});

t.test('a power-loss state: the epoch minus its dropped writes, starting from the previous flush', async (t) => {
  const plan = generateStates(digest, acks, { perEpoch: 1000, torn: true });
  for (const s of plan.states.filter((x) => x.kind === 'power-loss')) {
    const epoch = plan.epochs.find((e) => e.epoch === s.epoch)!;
    t.equal(s.base, epoch.base, `${s.name} forks at the epoch's start`);
    const writes = epochWrites(digest, epoch);
    const lost = new Set(s.dropped.map((d) => d.index));
    t.ok(s.dropped.length > 0 || s.torn, `${s.name} loses something`);
    const applied = s.apply.map((a) => a.index);
    t.same(
      applied,
      writes.map((w) => w.index).filter((i) => !lost.has(i) && (s.variant !== 'torn' || i <= s.torn!.index)),
      `${s.name}: applies the rest, in log order`,
    );
    if (s.variant === 'torn')
      t.ok(s.torn!.keptSectors < s.torn!.nrSectors && s.torn!.keptSectors % 8 === 0, `${s.name}: a prefix of whole 4 KiB blocks`);
    t.match(s.name, new RegExp(`^flush-${s.epoch}-(cut|drop|subset|torn)-[0-9a-f]{8}`));
  }
});

t.test('identical states are built once: equal keys are equal images, different keys different images', async (t) => {
  const plan = generateStates(digest, acks, { perEpoch: 1000, torn: true, dedupe: false });
  const deduped = generateStates(digest, acks, { perEpoch: 1000, torn: true });
  t.ok(deduped.counts.duplicates > 0, `the fixture has duplicates (${deduped.counts.duplicates})`);
  t.equal(new Set(deduped.states.map((s) => s.key)).size, deduped.states.length);
  const groups = groupBy(plan.states, (s) => s.key);
  const same = [...groups.values()].filter((g) => g.length > 1).slice(0, 6);
  t.ok(same.length >= 3, 'without dedupe some states share a key');
  const distinct = [...groups.values()].map((g) => g[0]!).slice(0, 12);
  const picked = [...same.flat(), ...distinct];
  const hashes = new Map<PlannedState, string>();
  await forEachState(log, base, picked, { workDir: tmp.path, jobs: 2 }, async (s, image) =>
    hashes.set(s, await sha256File(image)),
  );
  for (const g of same) t.equal(new Set(g.map((s) => hashes.get(s))).size, 1, `${g.map((s) => s.name).join(' = ')}: one image`);
  t.equal(new Set(distinct.map((s) => hashes.get(s))).size, distinct.length, 'states with different keys are different images');
});

t.test('a dropped write really is missing: the state equals replaying a log without it', async (t) => {
  const plan = generateStates(digest, acks, { perEpoch: 1000 });
  const drop = plan.states.find((s) => s.variant === 'drop' && s.epoch > 2)!;
  const epoch = plan.epochs.find((e) => e.epoch === drop.epoch)!;
  const lost = drop.dropped[0]!.index;
  const without = tmp.join('without.log');
  const entries = await Promise.all(
    log.entries
      .slice(0, epoch.end)
      .filter((e) => e.index !== lost)
      .map(async (e) => ({
        sector: e.sector,
        nrSectors: e.nrSectors,
        flags: e.flags,
        ...(e.dataBytes ? { data: await log.readData(e) } : {}),
      })),
  );
  await writeWriteLog(without, 512, entries);
  await using other = await WriteLog.open(without);
  await replayPrefix(other, base, tmp.join('expected.img'), other.entries.length);
  const [got] = await forEachState(log, base, [drop], { workDir: tmp.path, keep: () => true }, async () => 'ok');
  t.equal(
    await sha256File(got!.image!),
    await sha256File(tmp.join('expected.img')),
    `${drop.name} is the epoch without ${drop.dropped[0]!.id}`,
  );
});

t.test('names do not depend on log positions: a write added in front changes indices, not names', async (t) => {
  const a = generateStates(digest, acks, { perEpoch: 6, torn: true, seed: 7 });
  const again = generateStates(digest, acks, { perEpoch: 6, torn: true, seed: 7 });
  t.same(
    again.states.map((s) => s.name),
    a.states.map((s) => s.name),
    'the same log, seed and budget give the same states',
  );
  const shifted = tmp.join('shifted.log');
  const extra = { sector: 30000, nrSectors: 8, flags: 0, data: randomBytes(4096) };
  const entries = await Promise.all(
    log.entries.map(async (e) => ({
      sector: e.sector,
      nrSectors: e.nrSectors,
      flags: e.flags,
      ...(e.dataBytes ? { data: await log.readData(e) } : {}),
    })),
  );
  await writeWriteLog(shifted, 512, [extra, ...entries]);
  await using other = await WriteLog.open(shifted);
  const b = generateStates(
    await digestLog(other, base),
    ackPositions(
      other,
      fixtureAcks().acks.map((x) => ({ ...x, ackBytes: x.ackBytes + 512 + 4096 })),
    ),
    { perEpoch: 1000, torn: true },
  );
  const full = generateStates(digest, acks, { perEpoch: 1000, torn: true });
  const later = (p: typeof full) => p.states.filter((s) => s.kind === 'power-loss' && s.epoch > 1);
  t.same(
    later(b).map((s) => s.name),
    later(full).map((s) => s.name),
    'every power-loss state after the first epoch keeps its name',
  );
  t.same(
    later(b).map((s) => s.dropped.map((d) => d.id)),
    later(full).map((s) => s.dropped.map((d) => d.id)),
    'and its dropped ids',
  );
  t.same(
    later(b).map((s) => s.dropped.map((d) => d.index)),
    later(full).map((s) => s.dropped.map((d) => d.index + 1)),
    'while the indices moved by one',
  );
});

t.test('in place: a check whose writes cannot be undone costs a rebuilt working image, not the later states', async (t) => {
  const plan = generateStates(digest, acks, { perEpoch: 4 });
  const picked = plan.states.slice(0, 12);
  const spoiled = picked[4]!;
  const byCopy = new Map<PlannedState, string>();
  await forEachState(
    log,
    base,
    picked,
    { workDir: tmp.path, jobs: 1, fork: 'copy' },
    async (s, image) => void byCopy.set(s, await sha256File(image)),
  );
  const inPlace = new Map<PlannedState, string>();
  const outcomes = await forEachState(
    log,
    base,
    picked,
    { workDir: tmp.path, jobs: 1, fork: 'in-place', keep: (s) => s === spoiled },
    async (s, image, scope) => {
      inPlace.set(s, await sha256File(image));
      if (s === spoiled) {
        // A program that wrote the image and left an undo file that is not one (an e2fsck killed mid-run).
        const fd = openSync(image, 'r+');
        writeSync(fd, randomBytes(4096), 0, 4096, 8192);
        closeSync(fd);
        writeFileSync(scope.undoFile()!, 'not an undo file');
      }
    },
  );
  t.same(
    picked.map((s) => inPlace.get(s)),
    picked.map((s) => byCopy.get(s)),
    'every state, before and after the spoiled one, is checked on the image a copy gives',
  );
  const o = outcomes[picked.indexOf(spoiled)]!;
  t.match(o.rebuilt, /could not be undone \(undo file .*\); the working image was rebuilt from the base/);
  t.same(
    outcomes.filter((x) => x.rebuilt).map((x) => x.state.name),
    [spoiled.name],
    'only that state says so',
  );
  t.same(
    outcomes.filter((x) => x.error),
    [],
    'and no state errored: its check read the image before the undo',
  );
  t.equal(await sha256File(o.image!), byCopy.get(spoiled), 'its kept image is the state, not what the check wrote');
  t.same(
    (await readdir(tmp.path)).filter((f) => f.startsWith('undo-')),
    [],
    'no undo file left',
  );
});

t.test('in place: what unchangedFromBase calls unchanged holds the base bytes, in every state', async (t) => {
  const plan = generateStates(digest, acks, { perEpoch: 4 });
  const picked = plan.states.slice(0, 40);
  const baseBytes = readFileSync(base);
  const unit = 1024;
  let claimed = 0;
  let wrong = 0;
  let noAnswer = 0;
  await forEachState(log, base, picked, { workDir: tmp.path, jobs: 2, fork: 'in-place' }, async (s, image, scope) => {
    const same = scope.unchangedFromBase?.();
    if (!same) {
      noAnswer++;
      return;
    }
    const bytes = readFileSync(image);
    for (let off = 0; off + unit <= bytes.length; off += unit) {
      if (!same(off, unit)) continue;
      claimed++;
      if (!bytes.subarray(off, off + unit).equals(baseBytes.subarray(off, off + unit))) wrong++;
    }
    // Nor across units: a range is unchanged only if each of its units is.
    if (same(0, bytes.length)) t.ok(bytes.equals(baseBytes), `${s.name}: the whole image unchanged only if it is the base`);
  });
  t.equal(noAnswer, 0, 'every in-place state answers');
  t.equal(wrong, 0, 'no range called unchanged differs from the base');
  t.ok(claimed > 0, `and it calls most of the image unchanged (${claimed} KiB over ${picked.length} states)`);
});

t.test(
  'in place: a program that wrote with an undo file marks what it wrote; an unreadable undo file gives no answer',
  async (t) => {
    const plan = generateStates(digest, acks, { perEpoch: 0 });
    const picked = plan.states.slice(0, 2);
    const answers: Array<boolean | undefined> = [];
    await forEachState(log, base, picked, { workDir: tmp.path, jobs: 1, fork: 'in-place' }, async (s, image, scope) => {
      const before = scope.unchangedFromBase?.();
      t.ok(before?.(16 << 20, 4096), `${s.name}: a range the log never writes is unchanged`);
      // A program that writes 4 KiB there (e2fsck -z would record it), with an undo file that does not verify.
      writeFileSync(scope.undoFile()!, 'not an undo file');
      answers.push(scope.unchangedFromBase?.()?.(16 << 20, 4096));
    });
    t.same(answers, [undefined, undefined], 'unknown, never "unchanged", once an undo file cannot be read');
  },
);

t.test(
  'a sector hash is sha1 of the sector number (8 bytes, little-endian) and its bytes: the keys of states.json do not change',
  async (t) => {
    const w = [...digest.writes.values()].find((d) => d.entry.dataBytes >= 1024)!;
    const data = await log.readData(w.entry);
    for (const i of [0, w.sectorHashes.length - 1]) {
      const n = Buffer.alloc(8);
      n.writeBigUInt64LE(BigInt(w.entry.sector + i));
      const d = createHash('sha1')
        .update(n)
        .update(data.subarray(i * 512, (i + 1) * 512))
        .digest();
      t.equal(w.sectorHashes[i], (d.readBigUInt64BE(0) << 64n) | d.readBigUInt64BE(8), `sector ${i} of entry ${w.entry.index}`);
    }
  },
);
