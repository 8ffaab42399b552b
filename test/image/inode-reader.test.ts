import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { copyImage } from '../../harness/image/disk.ts';
import { inodeStatOf, readEntryState, statPaths, statReads, type InodeStat } from '../../harness/image/debugfs.ts';
import { AskDebugfsError, InodeReader } from '../../harness/image/inode-reader.ts';
import { runE2fsck } from '../../harness/image/e2fsck.ts';
import { WriteLog } from '../../harness/crash/writelog/format.ts';
import { digestLog } from '../../harness/crash/writelog/digest.ts';
import { generateStates } from '../../harness/crash/writelog/states.ts';
import { ackPositions } from '../../harness/crash/writelog/record.ts';
import { forEachState } from '../../harness/crash/writelog/materialize.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { fixtureAcks, fixtureLog } from '../writelog/fixture.ts';
import { unwrittenExtentImage } from '../helpers/unwritten-extent.ts';

// The content oracle stats every file of every crash state in process
// (image/inode-reader.ts) and asks debugfs only for an image the reader
// leaves to it. Its stats must be debugfs's to the field: the same inode,
// type, flags, size, links, block count and map text (from which the
// mapping kind, data blocks and levels are derived), and the same files
// missing. Held here on real images: block-mapped with every shape of
// indirect tree, converted to extents by e2fsck (extent tree blocks,
// unwritten extents), 1 KiB blocks with metadata_csum and 4 KiB without,
// and crash states of a real recorded log after e2fsck's journal replay.
// A damaged image is left to debugfs, and then reads exactly as debugfs
// reads it.
const tmp = await TempDir.create('inode-reader-test');
t.teardown(() => tmp.remove());

/** The reader's stats of `paths`, or what it left to debugfs. */
function readInProcess(image: string, paths: string[]): Map<string, InodeStat | undefined> | AskDebugfsError {
  const fd = openSync(image, 'r');
  try {
    const reader = InodeReader.open(fd, image);
    return new Map(paths.map((p) => [p, ((f) => f && inodeStatOf(f))(reader.stat(p))]));
  } catch (e) {
    if (e instanceof AskDebugfsError) return e;
    throw e;
  } finally {
    closeSync(fd);
  }
}

/** Read in process, and every path's stat the same as debugfs's. */
async function sameAsDebugfs(t: Test, image: string, paths: string[], what: string): Promise<Map<string, InodeStat | undefined>> {
  const mine = readInProcess(image, paths);
  if (mine instanceof AskDebugfsError) {
    t.fail(`${what}: left to debugfs (${mine.reason})`);
    return new Map();
  }
  const theirs = await statPaths(image, paths);
  const differ = paths.filter((p) => !isDeepStrictEqual(mine.get(p), theirs.get(p)));
  t.same(
    differ.map((p) => ({ path: p, inProcess: mine.get(p), debugfs: theirs.get(p) })),
    [],
    `${what}: ${paths.length} paths, every stat as debugfs's`,
  );
  return mine;
}

const extraPaths = ['/', '/lost+found', '/no-such-file', '/lost+found/no-such-file', '/no-such-dir/x'];

t.test('built images, block-mapped and converted to extents: every stat as debugfs says it', async (t) => {
  const maps: string[] = [];
  for (const name of ['shapes-4k', 'shapes-1k', 'fragmented-4k', 'sparse-dind-1k']) {
    const base = await buildImage(await loadRecipe(name));
    const paths = [...base.manifest.entries.map((e) => e.path), ...extraPaths];
    const img = tmp.join(`${name}.img`);
    await copyImage(base.path, img);
    const blocks = await sameAsDebugfs(t, img, paths, `${name} as built`);
    // e2fsck -E bmap2extent rewrites every block map as an extent tree: the large fragmented files get extent tree blocks.
    execFileSync('e2fsck', ['-fy', '-E', 'bmap2extent', img], { stdio: 'ignore' });
    const extents = await sameAsDebugfs(t, img, paths, `${name} converted to extents`);
    for (const s of [...blocks.values(), ...extents.values()]) if (s) maps.push(s.map);
  }
  // What the comparison covered (a reader that printed no map would agree only on files without one).
  for (const [label, re] of [
    ['indirect', /\(IND\)/],
    ['double indirect', /\(DIND\)/],
    ['extent tree block', /\(ETB0\)/],
    ['extents', /^EXTENTS:\n\(\d/],
  ] as const)
    t.ok(
      maps.some((m) => re.test(m)),
      `${label}: such a map was compared`,
    );
});

t.test('unwritten extents are printed as debugfs prints them', async (t) => {
  const img = tmp.join('unwritten.img');
  const file = await unwrittenExtentImage(img);
  const stats = await sameAsDebugfs(t, img, [file.path], 'fallocated past the data, the size inside the unwritten extents');
  t.match(stats.get(file.path)?.map, /\[u\]/, 'the map has an unwritten extent');
});

t.test("crash states of a real recorded log, after e2fsck's journal replay", async (t) => {
  const base = await buildImage(await loadRecipe('small-4k'));
  const log = await WriteLog.open(fixtureLog(tmp.join('real.log')));
  t.teardown(() => log.close());
  const digest = await digestLog(log, base.path);
  const plan = generateStates(digest, ackPositions(log, fixtureAcks().acks), { perEpoch: 2, torn: true, seed: 5 });
  const paths = [...base.manifest.entries.map((e) => e.path), ...extraPaths];
  let compared = 0;
  const out = await forEachState(
    log,
    base.path,
    plan.states,
    { workDir: tmp.path, jobs: 1, fork: 'in-place' },
    async (s, image, scope) => {
      await runE2fsck(image, 'journal-only', { undoFile: scope.undoFile() });
      await sameAsDebugfs(t, image, paths, s.name);
      compared++;
    },
  );
  t.same(
    out.filter((o) => o.error).map((o) => `${o.state.name}: ${o.error}`),
    [],
    'every state read',
  );
  t.ok(compared >= 10, `${compared} states compared`);
});

/** debugfs's `imap PATH`: where the inode's bytes are. */
function inodeAt(image: string, path: string, blockSize: number): number {
  const out = execFileSync('debugfs', ['-R', `imap ${path}`, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const m = /located at block (\d+), offset (0x[0-9a-f]+)/.exec(out)!;
  return Number(m[1]) * blockSize + parseInt(m[2]!, 16);
}

function patch(image: string, at: number, edit: (b: Buffer) => void, length = 4): void {
  const fd = openSync(image, 'r+');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, at);
    edit(b);
    writeSync(fd, b, 0, length, at);
  } finally {
    closeSync(fd);
  }
}

t.test('a damaged image is left to debugfs, and reads as debugfs reads it', async (t) => {
  const cases: Array<{
    name: string;
    recipe: string;
    convert?: boolean;
    reason: RegExp;
    damage: (img: string, bs: number) => void;
  }> = [
    {
      name: "a file's inode checksum",
      recipe: 'shapes-1k',
      reason: /inode \d+ checksum/,
      damage: (img, bs) => patch(img, inodeAt(img, '/shapes/direct-12', bs) + 0x04, (b) => (b[0]! ^= 0x40)),
    },
    {
      name: 'the superblock checksum',
      recipe: 'shapes-1k',
      reason: /superblock checksum/,
      damage: (img) => patch(img, 1024 + 0x2c, (b) => (b[0]! ^= 1)),
    },
    {
      name: "a directory entry's record length",
      recipe: 'shapes-4k',
      reason: /corrupt entry/,
      damage: (img, bs) => {
        const root = /BLOCKS:\n\((\d+)\):(\d+)/.exec(
          execFileSync('debugfs', ['-R', 'stat /', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
        )!;
        // The second entry ("..") gets a record length that is not a multiple of 4.
        patch(img, Number(root[2]) * bs + 12 + 4, (b) => b.writeUInt16LE(13, 0), 2);
      },
    },
    {
      name: 'an indirect block outside the filesystem',
      recipe: 'shapes-4k',
      reason: /outside the filesystem/,
      damage: (img, bs) => patch(img, inodeAt(img, '/shapes/ind-13', bs) + 0x28 + 48, (b) => b.writeUInt32LE(0x7fffff00, 0)),
    },
    {
      name: 'an extent header',
      recipe: 'shapes-4k',
      convert: true,
      reason: /extent header/,
      damage: (img, bs) => patch(img, inodeAt(img, '/shapes/fragmented', bs) + 0x28, (b) => b.writeUInt16LE(0x1234, 0), 2),
    },
  ];
  for (const c of cases) {
    const base = await buildImage(await loadRecipe(c.recipe));
    const img = tmp.join(`damaged-${c.recipe}.img`);
    await copyImage(base.path, img);
    if (c.convert) execFileSync('e2fsck', ['-fy', '-E', 'bmap2extent', img], { stdio: 'ignore' });
    c.damage(img, base.manifest.blockSize);
    const paths = [...base.manifest.entries.map((e) => e.path), ...extraPaths];
    const mine = readInProcess(img, paths);
    t.ok(mine instanceof AskDebugfsError, `${c.name}: left to debugfs`);
    if (mine instanceof AskDebugfsError) t.match(mine.reason, c.reason, `${c.name}: ${mine.reason}`);
    const before = statReads.debugfs;
    const read = await readEntryState(img, paths, undefined, { via: 'map' });
    t.equal(statReads.debugfs, before + 1, `${c.name}: readEntryState asked debugfs`);
    const asDebugfs = await readEntryState(img, paths, undefined, { via: 'map', statWith: 'debugfs' });
    t.same(
      read.map((s) => [s.path, s.exists, s.size, s.sha256, s.stat]),
      asDebugfs.map((s) => [s.path, s.exists, s.size, s.sha256, s.stat]),
      `${c.name}: every file reads as debugfs reads it`,
    );
  }
});
