import t from 'tap';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { WriteLog } from '../../harness/crash/writelog/format.ts';
import { digestLog, identityAfter, type SectorChange } from '../../harness/crash/writelog/digest.ts';
import { generateStates } from '../../harness/crash/writelog/states.ts';
import { ackPositions } from '../../harness/crash/writelog/record.ts';
import { forEachState } from '../../harness/crash/writelog/materialize.ts';
import { runE2fsck } from '../../harness/image/e2fsck.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { fixtureAcks, fixtureLog } from './fixture.ts';

// The identity of a recovered image (materialize.ts CheckScope.identity):
// a state's key moved by what e2fsck's journal replay wrote, read from its
// undo file. Checked on the recorded fixture log and the real small-4k base
// it was recorded on, with the real e2fsck, against the identity computed
// from scratch (every sector of the image that differs from the base) and
// against the image's bytes: equal identities exactly when equal images.
// A wrong identity would give a state another image's e2fsck verdict
// (checks/checked-images.ts).
const base = await buildImage(await loadRecipe('small-4k'));
const tmp = await TempDir.create('writelog-identity-test');
t.teardown(() => tmp.remove());
const log = await WriteLog.open(fixtureLog(tmp.join('real.log')));
t.teardown(() => log.close());
const digest = await digestLog(log, base.path);
const plan = generateStates(digest, ackPositions(log, fixtureAcks().acks), { perEpoch: 4, torn: true, seed: 3 });

/** The identity from scratch: every sector where `image` differs from the base, as identityAfter sums them. */
function identityFromScratch(image: string): string {
  const a = readFileSync(image);
  const b = readFileSync(base.path);
  const changes: SectorChange[] = [];
  for (let s = 0; s * 512 < Math.max(a.length, b.length); s++) {
    const x = a.subarray(s * 512, s * 512 + 512);
    const y = b.subarray(s * 512, s * 512 + 512);
    if (!x.equals(y)) changes.push({ sector: s, before: Buffer.concat([y, Buffer.alloc(512 - y.length)]), after: x });
  }
  return identityAfter(0n, changes, (s) => digest.knownBaseSectorHash(s))
    .toString(16)
    .padStart(32, '0');
}

t.test('after the journal replay: the identity is the image from scratch, and equal identities are equal images', async (t) => {
  const seen: Array<{ name: string; key: string; before: string | undefined; after: string; scratch: string; sha: string }> = [];
  const out = await forEachState(
    log,
    base.path,
    plan.states,
    { workDir: tmp.path, jobs: 2, fork: 'in-place', knownBaseSectorHash: (s) => digest.knownBaseSectorHash(s) },
    async (s, image, scope) => {
      const before = scope.identity?.();
      await runE2fsck(image, 'journal-only', { undoFile: scope.undoFile() });
      const after = scope.identity?.();
      if (after === undefined) throw new Error('no identity after the replay');
      seen.push({
        name: s.name,
        key: s.key,
        before,
        after,
        scratch: identityFromScratch(image),
        sha: createHash('sha256').update(readFileSync(image)).digest('hex'),
      });
    },
  );
  t.same(
    out.filter((o) => o.error).map((o) => `${o.state.name}: ${o.error}`),
    [],
    'every state replayed',
  );
  t.ok(seen.length >= 20, `${seen.length} states`);
  t.same(
    seen.filter((x) => x.before !== x.key).map((x) => x.name),
    [],
    "before any program wrote the image, its identity is the state's key",
  );
  t.same(
    seen.filter((x) => x.after !== x.scratch).map((x) => x.name),
    [],
    'after the replay, the identity from the undo file is the one from every differing sector',
  );
  const replayed = seen.filter((x) => x.after !== x.key).length;
  t.ok(replayed >= seen.length / 2, `${replayed} of ${seen.length} states changed by the replay`);
  const byIdentity = new Map<string, Set<string>>();
  const bySha = new Map<string, Set<string>>();
  for (const x of seen) {
    byIdentity.set(x.after, (byIdentity.get(x.after) ?? new Set()).add(x.sha));
    bySha.set(x.sha, (bySha.get(x.sha) ?? new Set()).add(x.after));
  }
  t.ok(
    [...byIdentity.values()].every((s) => s.size === 1) && [...bySha.values()].every((s) => s.size === 1),
    'equal identities exactly when equal bytes',
  );
  const shared = seen.length - byIdentity.size;
  t.comment(
    `${shared} states share their recovered image with an earlier one (${new Set(seen.map((x) => x.key)).size} distinct before the replay)`,
  );
  t.ok(shared > 0, 'some states differ before the replay and not after it: what the check cache reuses');
});
