import t from 'tap';
import { copyFile } from 'node:fs/promises';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { runOracles, needsRepair } from '../../harness/checks/oracle.ts';
import { decodeExit } from '../../harness/image/e2fsck.ts';
import { noExpectations } from '../../harness/crash/expectations.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { CheckedImages } from '../../harness/checks/checked-images.ts';

// The oracle's shortcut (no -fy and no second -fn when the first -fn left
// nothing to repair) on real images: it is taken where only the
// superblock's summary counts are off, and never where a finding needs the
// repair (corruption, and a repair that does not converge).
const base = await buildImage(await loadRecipe('small-4k'));
const tmp = await TempDir.create('oracle-shortcuts');
t.teardown(() => tmp.remove());

async function image(name: string, debugfsCommands: string[]): Promise<string> {
  const img = tmp.join(`${name}.img`);
  await copyFile(base.path, img);
  for (const c of debugfsCommands) execFileSync('debugfs', ['-w', '-R', c, img], { stdio: 'ignore' });
  return img;
}

/** The 1 KiB units of `image` equal to the base's: what an in-place state's WrittenMap promises at most. */
function sameAsBase(image: string): (offset: number, length: number) => boolean {
  const a = readFileSync(image);
  const b = readFileSync(base.path);
  const same = (u: number) => a.subarray(u * 1024, u * 1024 + 1024).equals(b.subarray(u * 1024, u * 1024 + 1024));
  return (offset, length) => {
    for (let u = Math.floor(offset / 1024); u * 1024 < offset + length; u++) if (!same(u)) return false;
    return true;
  };
}

const ctx = { manifest: base.manifest, migrated: [], expectations: noExpectations };

t.test('only the superblock free counts wrong: leak findings from one -fn, no repair', async (t) => {
  const img = await image('counts', ['ssv free_blocks_count 17', 'ssv free_inodes_count 5']);
  const r = await runOracles({ mode: 'e2fsck', image: img, runs: [] }, ctx);
  t.same(
    r.runs.map((x) => x.mode),
    ['check'],
    'one e2fsck -fn and nothing else',
  );
  t.same([...new Set(r.findings.map((f) => `${f.class}:${f.name}`))].sort(), [
    'leak:PR_5_FREE_BLOCK_COUNT',
    'leak:PR_5_FREE_INODE_COUNT',
  ]);
  t.equal(r.ms?.repairMs, 0);
});

t.test('a real problem beside the counts: the repair and the second -fn still run', async (t) => {
  const img = await image('links', ['ssv free_blocks_count 17', 'set_inode_field /shapes/direct-12 links_count 0']);
  const r = await runOracles({ mode: 'e2fsck', image: img, runs: [] }, ctx);
  t.same(
    r.runs.map((x) => x.mode),
    ['check', 'repair', 'check'],
  );
  t.ok(
    r.findings.some((f) => f.class === 'corruption'),
    'the corruption is reported',
  );
  t.ok(
    r.findings.some((f) => f.name === 'PR_5_FREE_BLOCK_COUNT'),
    'and the count beside it',
  );
});

t.test('needsRepair: counts alone with exit 0 are done; any other problem, or a non-zero exit, repairs', async (t) => {
  const p = (code: number) => ({ code, codeHex: `0x${code.toString(16).padStart(6, '0')}`, pass: code >> 16, attrs: {} });
  t.equal(needsRepair({ exit: decodeExit(0), problems: [] }), false);
  t.equal(needsRepair({ exit: decodeExit(0), problems: [p(0x050000), p(0x05000d), p(0x05000f)] }), false);
  t.equal(
    needsRepair({ exit: decodeExit(4), problems: [p(0x05000d)] }),
    true,
    'e2fsck itself says errors are left: repair (a non-convergence must be seen)',
  );
  t.equal(
    needsRepair({ exit: decodeExit(0), problems: [p(0x05000f), p(0x050005)] }),
    true,
    'a block in use marked free beside the counts',
  );
  t.equal(needsRepair({ exit: decodeExit(0), problems: [p(0x010004)] }), true);
});

/**
 * What the workload promised about two files: `migrated` converted and made
 * durable by a sync (a durability finding while it is still block-mapped),
 * and `written` holding a completed, durable write (its history judges every
 * sector: a content finding while the image holds other bytes).
 */
function promised(migrated: string, written: string) {
  return {
    mustBeExtents: [migrated],
    mustBeBlocks: [],
    files: [
      {
        path: written,
        origin: 'recipe' as const,
        ops: [{ kind: 'write' as const, step: 'w', offset: 0, size: 4096, seed: 7, complete: true }],
        durable: 1,
      },
    ],
    migrations: [],
  };
}

// Every finding kind the full oracle reports, planted on one image, survives
// the shortcuts: the -fn that ends the check early, the content oracle's
// versions and origins built once per run (the second check of the same
// state is served from them and must say the same), and files compared with
// the base image instead of hashed.
t.test("each finding kind survives the shortcuts and the content oracle's caches", async (t) => {
  const recipe = await loadRecipe('small-4k');
  const direct = base.manifest.entries.find((e) => e.path === '/shapes/direct-12')!;
  const victim = base.manifest.entries.find(
    (e) => e.type === 'file' && e.path !== direct.path && e.blockMap?.data.length && e.size >= 4096,
  )!;
  const img = await image('kinds', ['ssv free_blocks_count 17', `set_inode_field ${direct.path} links_count 0`]);
  // Content: one block of a file the workload never touched, overwritten.
  const fd = openSync(img, 'r+');
  writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, victim.blockMap!.data[0]![1] * base.manifest.blockSize);
  closeSync(fd);
  const written = base.manifest.entries.find(
    (e) => e.type === 'file' && e.path !== direct.path && e.path !== victim.path && e.size >= 8192,
  )!;
  const expectations = promised(direct.path, written.path);
  // The same state twice (the repair changes the image it runs on): the second check is served from the caches.
  const again = tmp.join('kinds-again.img');
  await copyFile(img, again);
  const unshortened = tmp.join('kinds-hashed.img');
  await copyFile(img, unshortened);
  const told = tmp.join('kinds-told.img');
  await copyFile(img, told);
  const run = (
    image: string,
    basePath: string | undefined = base.path,
    unchangedFromBase?: (offset: number, length: number) => boolean,
  ) =>
    runOracles(
      {
        mode: 'e2fsck',
        image,
        runs: [],
        console: '[    1.0] kernel BUG at fs/ext4/migrate.c:100!\n',
        ...(unchangedFromBase ? { unchangedFromBase } : {}),
      },
      // The base given: files left as on it are compared with it, not hashed (content.ts, debugfs.ts readEntryState's `base`).
      { manifest: base.manifest, migrated: [], expectations, recipe, ...(basePath ? { basePath } : {}) },
    );
  const first = await run(img);
  const second = await run(again);
  const hashed = await run(unshortened, undefined);
  // As an in-place write-log state is checked: told which ranges nothing wrote since the base (here: those equal to it).
  const toldRun = await run(told, base.path, sameAsBase(told));
  t.same(
    first.findings.map((f) => [f.source, f.code, f.path, f.message, f.detail]),
    hashed.findings.map((f) => [f.source, f.code, f.path, f.message, f.detail]),
    'the same findings, details included, as with every file hashed',
  );
  t.same(
    toldRun.findings.map((f) => [f.source, f.code, f.path, f.message, f.detail]),
    hashed.findings.map((f) => [f.source, f.code, f.path, f.message, f.detail]),
    'the same findings when told which ranges still hold the base bytes',
  );
  const kinds = (r: typeof first) => [...new Set(r.findings.map((f) => `${f.source}:${f.code}`))].sort();
  for (const k of ['console:bug', 'content:content-changed', 'durability:not-durable'])
    t.ok(kinds(first).includes(k), `${k} reported`);
  t.ok(
    first.findings.some((f) => f.class === 'corruption' && f.source === 'e2fsck'),
    'a problem code of e2fsck -fn',
  );
  t.ok(
    first.findings.some((f) => f.path === written.path && f.code === 'content-changed'),
    'the written file held to its history',
  );
  t.ok(
    first.findings.some((f) => f.path === victim.path && f.code === 'content-changed'),
    'the overwritten block',
  );
  t.same(
    first.runs.map((r) => r.mode),
    ['check', 'repair', 'check'],
    'a real problem: the repair and the second -fn run, so a non-convergence would be seen',
  );
  t.same(
    second.findings.map((f) => `${f.source}:${f.code}:${f.message}`),
    first.findings.map((f) => `${f.source}:${f.code}:${f.message}`),
    'the same findings, word for word, from the caches',
  );
});

t.test(
  'ioctl-lied: a file the kernel read back block-mapped after an ioctl that returned 0, extent-mapped after recovery',
  async (t) => {
    const direct = base.manifest.entries.find((e) => e.path === '/shapes/direct-12')!;
    const img = await image('lied', [`set_inode_field ${direct.path} flags 0x80000`]);
    const expectations = {
      mustBeExtents: [],
      mustBeBlocks: [direct.path],
      files: [],
      migrations: [{ path: direct.path, ret: 0 }],
    };
    const r = await runOracles(
      { mode: 'e2fsck', image: img, runs: [] },
      { manifest: base.manifest, migrated: [], expectations: expectations as never },
    );
    const f = r.findings.find((x) => x.code === 'migrated-despite-error');
    t.ok(f, 'reported');
    t.match(f?.message ?? '', /the ioctl returned 0 but the kernel read the file back block-mapped/);
  },
);

t.test(
  'an image already checked (same identity) is not checked again: the same findings, word for word, from its runs',
  async (t) => {
    const direct = base.manifest.entries.find((e) => e.path === '/shapes/direct-12')!;
    const written = base.manifest.entries.find((e) => e.type === 'file' && e.path !== direct.path && e.size >= 8192)!;
    const recipe = await loadRecipe('small-4k');
    const first = await image('same-1', ['ssv free_blocks_count 17', `set_inode_field ${direct.path} links_count 0`]);
    const second = tmp.join('same-2.img');
    await copyFile(first, second);
    const third = tmp.join('same-3.img');
    await copyFile(first, third);
    const unrelated = await image('same-other', ['ssv free_blocks_count 17']);
    const held = promised(direct.path, written.path);
    const checked = new CheckedImages();
    const run = (img: string, key: string, state: string, expectations: typeof held | typeof noExpectations) =>
      runOracles(
        { mode: 'e2fsck', image: img, runs: [], identity: { key, state } },
        { manifest: base.manifest, migrated: [], expectations, recipe, basePath: base.path, checked },
      );
    const a = await run(first, 'k1', 'flush-1', held);
    const b = await run(second, 'k1', 'flush-2', held);
    const c = await run(third, 'k1', 'flush-3', noExpectations);
    const d = await run(unrelated, 'k2', 'flush-4', noExpectations);
    const words = (r: typeof a) => r.findings.map((f) => [f.source, f.code, f.path, f.message, f.detail]);

    t.same(
      a.runs.map((r) => r.mode),
      ['check', 'repair', 'check'],
      'the first state with the image: -fn, the repair and -fn again ran',
    );
    t.equal(a.sameImageAs, undefined);
    t.ok(
      a.findings.some((f) => f.class === 'corruption' && f.source === 'e2fsck'),
      'a problem code',
    );
    t.ok(
      a.findings.some((f) => f.code === 'content-changed' && f.path === written.path),
      'a content finding',
    );
    t.ok(
      a.findings.some((f) => f.code === 'not-durable'),
      'a durability finding',
    );

    t.equal(b.sameImageAs, 'flush-1', 'the second state says whose runs it has');
    t.same(words(b), words(a), 'the same findings, details included');
    t.same(
      b.runs.map((r) => [r.mode, r.reusedFrom]),
      [
        ['check', 'flush-1'],
        ['repair', 'flush-1'],
        ['check', 'flush-1'],
      ],
    );
    t.ok(
      b.runs.every(
        (r) => r.argv.includes(second) && !r.argv.includes(first) && !r.text.includes(first) && !r.xml.includes(first),
      ),
      "each run names this state's image, not the first one's",
    );
    t.equal(b.ms?.checkMs, 0, 'no e2fsck ran');

    t.equal(c.sameImageAs, 'flush-1');
    t.same(
      c.findings.filter((f) => f.source === 'e2fsck' || f.source === 'repair').map((f) => f.message),
      a.findings.filter((f) => f.source === 'e2fsck' || f.source === 'repair').map((f) => f.message),
      "held to other expectations: the same image's e2fsck findings",
    );
    t.notOk(
      c.findings.some((f) => f.source === 'content' || f.source === 'durability'),
      'and its content judged again by its own expectations: nothing was promised, nothing is missing',
    );
    t.ok((c.ms?.contentMs ?? 0) > 0, 'the content oracle ran for it');

    t.equal(d.sameImageAs, undefined, 'another identity: checked on its own');
    t.same(
      d.runs.map((r) => r.reusedFrom),
      [undefined],
    );
  },
);

t.test('a check that failed leaves nothing to reuse: the next state with that image checks it itself', async (t) => {
  const checked = new CheckedImages();
  const claim = await checked.claim('k');
  t.ok('settle' in claim, 'the first asks: it checks');
  const waiting = checked.claim('k');
  if ('settle' in claim) claim.settle(undefined);
  const next = await waiting;
  t.ok('settle' in next, 'a state waiting on it checks it itself');
  const img = await image('after-failure', ['ssv free_blocks_count 17']);
  if ('settle' in next) next.settle({ state: 's', image: img, runs: [], content: { key: '', findings: [] } });
  const third = await checked.claim('k');
  t.ok('earlier' in third && third.earlier.state === 's', 'once one succeeds, the next reuses it');
});
