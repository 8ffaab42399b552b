import t from 'tap';
import { existsSync, mkdirSync, readFileSync, rmSync, truncateSync, utimesSync } from 'node:fs';
import { WriteLog } from '../../harness/crash/writelog/format.ts';
import { digestLog, type LogDigest } from '../../harness/crash/writelog/digest.ts';
import { digestFile, digestOf, dropDigestFile } from '../../harness/crash/writelog/digest-file.ts';
import { generateStates } from '../../harness/crash/writelog/states.ts';
import { ackPositions } from '../../harness/crash/writelog/record.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { fixtureAcks, fixtureLog } from './fixture.ts';

// A run plans a unit's states from the log's digest and checks them from it
// minutes later; the digest is kept beside the log and read back rather
// than made again (digest-file.ts). Read back, it must be the digest to the
// last hash, and the plan made from it the same plan; a file that is not
// this log's (another recording, another base) or is damaged must be made
// again, never used.
const base = await buildImage(await loadRecipe('small-4k'));
const tmp = await TempDir.create('digest-file-test');
t.teardown(() => tmp.remove());
const log = await WriteLog.open(fixtureLog(tmp.join('workload.log')));
t.teardown(() => log.close());
const fresh = await digestLog(log, base.path);

/** Every write's id and sector hashes and every base hash, as comparable values. */
function flat(d: LogDigest) {
  return {
    writes: [...d.writes].map(([i, w]) => [i, w.entry.index, w.contentId, w.sectorHashes.map(String)]),
    base: [...d.baseHashes].map(([s, h]) => [s, String(h)]),
  };
}

const plan = (d: LogDigest) =>
  generateStates(d, ackPositions(log, fixtureAcks().acks), { perEpoch: 4, torn: true, seed: 3 }).states.map((s) => [
    s.name,
    s.key,
  ]);

t.test('made once, then read back: the same digest and the same plan', async (t) => {
  dropDigestFile(log.path);
  const made = await digestOf(log, base.path);
  t.ok(existsSync(digestFile(log)), 'the digest is kept beside the log');
  t.same(flat(made), flat(fresh), 'made: the digest of digestLog');
  const kept = readFileSync(digestFile(log));
  const read = await digestOf(log, base.path);
  t.ok(readFileSync(digestFile(log)).equals(kept), 'read back, not written again');
  t.same(flat(read), flat(fresh), 'read back: every hash the same');
  t.ok(
    fresh.writes.size > 10 && fresh.baseHashes.size > 10,
    `${fresh.writes.size} writes, ${fresh.baseHashes.size} base sectors`,
  );
  t.same(plan(read), plan(fresh), 'the plan made from it is the same plan');
  t.equal(read.baseSectorHash(read.baseHashes.keys().next().value!), fresh.baseSectorHash(fresh.baseHashes.keys().next().value!));
});

t.test("a file that is not this log's or is damaged is made again", async (t) => {
  await digestOf(log, base.path);
  // The log rewritten (another recording in the same folder): its mtime moves.
  const later = new Date(Date.now() + 5000);
  utimesSync(log.path, later, later);
  const before = readFileSync(digestFile(log));
  t.same(flat(await digestOf(log, base.path)), flat(fresh), 'another stamp: made again');
  t.notOk(readFileSync(digestFile(log)).equals(before), 'and the file rewritten with the new stamp');
  // Cut short.
  truncateSync(digestFile(log), readFileSync(digestFile(log)).length - 7);
  t.same(flat(await digestOf(log, base.path)), flat(fresh), 'cut short: made again');
  // Another base image (the stamp names it).
  const other = await buildImage(await loadRecipe('shapes-4k'));
  const otherDigest = await digestOf(log, other.path);
  t.notSame(flat(otherDigest).base, flat(fresh).base, 'another base: its own hashes');
  t.same(flat(await digestOf(log, base.path)), flat(fresh), 'and back on the first base: its own again');
  dropDigestFile(log.path);
  t.notOk(existsSync(digestFile(log)), 'dropped with the log');
  // A file that cannot be written (a folder in its place): the digest is made, and nothing fails.
  mkdirSync(digestFile(log));
  t.same(flat(await digestOf(log, base.path)), flat(fresh), 'the file cannot be written: made, and the check goes on');
  rmSync(digestFile(log), { recursive: true });
});
