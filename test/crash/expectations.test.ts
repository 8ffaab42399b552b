import t from 'tap';
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { coveredBy, deriveExpectations, type StepRecord } from '../../harness/crash/expectations.ts';
import { parseMigrateOutput, parseWriterOutput, readbackVerdict } from '../../harness/crash/step-report.ts';
import type { Manifest } from '../../harness/image/manifest.ts';
import type { Step } from '../../harness/scenario/model.ts';
import { loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';

// What the acknowledged steps made durable, for the content oracle: a pure
// function of the scenario's steps, the agent's acknowledgements with each
// step's output, and the recipe's manifest. Outputs from the real guest are
// in test/fixtures/guest/ (capture-guest-reports.ts says how they were made).
const fixtures = new URL('../fixtures/guest/', import.meta.url).pathname;
const fixture = async (name: string) => {
  const b = await readFile(fixtures + name);
  return name.endsWith('.gz') ? gunzipSync(b).toString('utf8') : b.toString('utf8');
};
const capture = JSON.parse(await fixture('capture.json')) as { caseSeed: number; writerSize: number };

const entry = (path: string, type: 'file' | 'dir' | 'symlink', mapping: 'blocks' | 'none' | 'fast-symlink' = 'blocks') => ({
  path,
  type,
  size: 4096,
  ino: 0,
  mapping,
});
const manifest: Manifest = {
  recipe: 'test',
  recipeHash: 'x',
  blockSize: 4096,
  features: [],
  entries: [
    entry('/a', 'file'),
    entry('/b', 'file'),
    entry('/d', 'dir'),
    entry('/d/x', 'file'),
    entry('/d/link', 'symlink', 'fast-symlink'),
  ],
};
const mount: Step = { kind: 'mount', name: 'mount', options: [] };
const migrateA: Step = { kind: 'migrate', name: 'migrate', paths: ['/a'], recursive: false };
const sync: Step = { kind: 'sync', name: 'sync' };
const ok = (name: string, output = ''): StepRecord => ({ name, kind: 'sync', exitCode: 0, output });
const migratedA = ok('migrate', 'migrate file 0 0 /a\n');

t.test('a file the ioctl migrated is expected extent-mapped only once a later sync completed', async (t) => {
  const steps = [mount, migrateA, sync];
  t.same(
    deriveExpectations(steps, [ok('mount'), migratedA], manifest, false).expectations.mustBeExtents,
    [],
    'killed before the sync: nothing durable',
  );
  t.same(deriveExpectations(steps, [ok('mount'), migratedA, ok('sync')], manifest, false).expectations.mustBeExtents, ['/a']);
  t.same(
    deriveExpectations(steps, [ok('mount'), migratedA], manifest, true).expectations.mustBeExtents,
    ['/a'],
    'a clean shutdown unmounts: durable too',
  );
  t.same(
    deriveExpectations(steps, [ok('mount'), { ...migratedA, exitCode: undefined, output: undefined }, ok('sync')], manifest, true)
      .expectations.mustBeExtents,
    [],
    'a migrate still running at the kill reported nothing',
  );
});

t.test('expectations come from each file, never from the step status: a refused file must stay block-mapped', async (t) => {
  const output = await fixture('migrate-no-extent-feature.txt');
  t.equal(output, 'migrate file -1 22 /f\n', 'the real guest output of a refusal (EINVAL without the extent feature)');
  const steps: Step[] = [mount, { kind: 'migrate', name: 'migrate', paths: ['/a', '/f'], recursive: false }, sync];
  const r = deriveExpectations(
    steps,
    [ok('mount'), ok('migrate', `migrate file 0 0 /a\n${output}`), ok('sync')],
    manifest,
    true,
  ).expectations;
  t.same(r.mustBeExtents, ['/a']);
  t.same(r.mustBeBlocks, ['/f'], 'the refusal is no finding, but the file must be left block-mapped');
  t.same(
    r.migrations.map((m) => [m.path, m.ret, m.errno]),
    [
      ['/a', 0, 0],
      ['/f', -1, 22],
    ],
    'every per-file result is kept',
  );
});

t.test('a return value that is neither 0 nor -1 with an errno expects no mapping', async (t) => {
  const r = deriveExpectations(
    [mount, migrateA, sync],
    [ok('mount'), ok('migrate', 'migrate file 1 0 /a\n'), ok('sync')],
    manifest,
    true,
  ).expectations;
  t.same(r.mustBeExtents, []);
  t.same(r.mustBeBlocks, []);
  t.same(r.migrations, [{ step: 'migrate', path: '/a', type: 'file', ret: 1, errno: 0 }]);
});

t.test('fsync makes durable only the file it names', async (t) => {
  const fsyncA: Step = { kind: 'fsync', name: 'fsync', path: '/a' };
  const fsyncB: Step = { kind: 'fsync', name: 'fsync-b', path: '/b' };
  t.same(
    deriveExpectations([mount, migrateA, fsyncB], [ok('mount'), migratedA, ok('fsync-b')], manifest, false).expectations
      .mustBeExtents,
    [],
  );
  t.same(
    deriveExpectations([mount, migrateA, fsyncA], [ok('mount'), migratedA, ok('fsync')], manifest, false).expectations
      .mustBeExtents,
    ['/a'],
  );
});

t.test('shapes-4k: after the sync every regular file and directory the guest migrated is expected extent-mapped', async (t) => {
  const shapes = (await buildImage(await loadRecipe('shapes-4k'))).manifest;
  const output = await fixture('migrate-shapes-4k.txt.gz');
  const report = parseMigrateOutput('migrate', output);
  t.same(
    report.skipped.map((s) => s.path).sort(),
    ['/shapes/fast-link', '/shapes/slow-link'],
    'the symlinks are skipped, as chattr -R would',
  );
  t.same(report.errors, []);
  const steps: Step[] = [
    mount,
    { kind: 'migrate', name: 'migrate', paths: ['/shapes', '/many'], recursive: true },
    sync,
    { kind: 'umount', name: 'umount' },
  ];
  const exp = deriveExpectations(steps, [ok('mount'), ok('migrate', output), ok('sync')], shapes, false).expectations;
  const recipeFilesAndDirs = shapes.entries.filter((e) => e.type !== 'symlink').map((e) => e.path);
  t.equal(recipeFilesAndDirs.length, 79, 'the manifest has 13 shapes, /shapes/dir-multiblock, /many and its 64 files');
  t.same(
    [...recipeFilesAndDirs, '/shapes'].filter((p) => !exp.mustBeExtents.includes(p)),
    [],
    'every one of them is expected extent-mapped, /shapes and the empty file included',
  );
  t.equal(exp.mustBeExtents.length, 380, 'and so are the 300 empty entries of /shapes/dir-multiblock');
  t.notOk(
    exp.mustBeExtents.some((p) => p.endsWith('-link')),
    'symlinks are not',
  );
  t.same(exp.mustBeBlocks, []);
});

t.test('coveredBy: the path itself, below it only when recursive, never a sibling sharing a prefix', async (t) => {
  t.ok(coveredBy('/d', { path: '/d', recursive: false }));
  t.notOk(coveredBy('/d/x', { path: '/d', recursive: false }), 'migrating /d does not touch /d/x');
  t.ok(coveredBy('/d/sub/y', { path: '/d', recursive: true }));
  t.notOk(coveredBy('/dx', { path: '/d', recursive: true }), '/dx is not below /d');
  t.ok(coveredBy('/anything', { path: '/', recursive: true }));
});

t.test('a new file written and fsynced has its write as durable history; unsynced it does not', async (t) => {
  const write: Step = { kind: 'write', name: 'w', path: '/new', size: 1000, offset: 0, append: false, seed: 7 };
  const append: Step = { kind: 'write', name: 'w2', path: '/new', size: 500, offset: 0, append: true, seed: 8 };
  const fsync: Step = { kind: 'fsync', name: 'fs', path: '/new' };
  const durable = deriveExpectations(
    [mount, write, append, fsync],
    [ok('mount'), ok('w'), ok('w2'), ok('fs')],
    manifest,
    false,
  ).expectations;
  t.same(
    durable.files,
    [
      {
        path: '/new',
        origin: 'new',
        durable: 2,
        ops: [
          { kind: 'write', step: 'w', offset: 0, size: 1000, seed: 7, complete: true },
          { kind: 'write', step: 'w2', offset: 1000, size: 500, seed: 8, complete: true },
        ],
      },
    ],
    'the append is placed at the size before it',
  );
  const lost = deriveExpectations([mount, write, fsync], [ok('mount'), ok('w')], manifest, false).expectations;
  t.equal(lost.files[0]?.durable, 0);
});

t.test('a write into a recipe file is history over the recipe bytes; one still running at the kill is incomplete', async (t) => {
  const write: Step = { kind: 'write', name: 'w', path: '/a', size: 100, offset: 10, append: false, seed: 3 };
  const r = deriveExpectations([mount, write, sync], [ok('mount'), { name: 'w', kind: 'write' }], manifest, false).expectations;
  t.same(r.files, [
    {
      path: '/a',
      origin: 'recipe',
      durable: 0,
      ops: [{ kind: 'write', step: 'w', offset: 10, size: 100, seed: 3, complete: false }],
    },
  ]);
});

t.test(
  'a rewriter: running at the kill it has no rounds; its stop reports them and a later sync makes them durable',
  async (t) => {
    const start: Step = {
      kind: 'writer',
      name: 'od-start',
      mode: 'odirect',
      path: '/od',
      size: 65536,
      paceUs: 0,
      action: 'start',
    };
    const stop: Step = { ...start, name: 'od-stop', action: 'stop' };
    const output = await fixture('writer-odirect-stop.txt');
    const rounds = parseWriterOutput(output);
    t.match(rounds, { kind: 'writer', mode: 'odirect', size: capture.writerSize }, 'the real stop output parses');
    const steps = [mount, start, migrateA, stop, sync];
    const running = deriveExpectations(steps, [ok('mount'), ok('od-start'), migratedA], manifest, false, {
      caseSeed: capture.caseSeed,
    }).expectations;
    t.same(running.files, [
      {
        path: '/od',
        origin: 'new',
        durable: 0,
        ops: [{ kind: 'writer', step: 'od-start', mode: 'odirect', size: 65536, seed: capture.caseSeed }],
      },
    ]);
    const stopped = deriveExpectations(steps, [ok('mount'), ok('od-start'), migratedA, ok('od-stop', output)], manifest, false, {
      caseSeed: capture.caseSeed,
    }).expectations;
    t.match(
      stopped.files[0],
      { durable: 0, ops: [{ rounds: (rounds as { rounds: number }).rounds }] },
      'stopped, not yet synced',
    );
    const synced = deriveExpectations(
      steps,
      [ok('mount'), ok('od-start'), migratedA, ok('od-stop', output), ok('sync')],
      manifest,
      false,
      { caseSeed: capture.caseSeed },
    ).expectations;
    t.equal(synced.files[0]?.durable, 1, 'stopped and synced: exact');
    t.same(synced.mustBeExtents, ['/a']);
  },
);

t.test(
  'mmap-holes: the stop reports the stores; a write into its file while it runs makes the bytes unknowable, and says so',
  async (t) => {
    const start: Step = {
      kind: 'writer',
      name: 'h-start',
      mode: 'mmap-holes',
      path: '/b',
      size: 0,
      paceUs: 200,
      action: 'start',
    };
    const stop: Step = { ...start, name: 'h-stop', action: 'stop' };
    const output = await fixture('holes-stop.txt');
    const r = deriveExpectations(
      [mount, start, stop, { kind: 'umount', name: 'umount' }],
      [ok('mount'), ok('h-start'), ok('h-stop', output), ok('umount')],
      manifest,
      false,
      { caseSeed: 5 },
    ).expectations;
    t.same(r.files, [
      {
        path: '/b',
        origin: 'recipe',
        durable: 1,
        ops: [{ kind: 'mmap-holes', step: 'h-start', seed: 5, stored: 23, holes: 32, first: 32768, last: 159744 }],
      },
    ]);
    const write: Step = { kind: 'write', name: 'w', path: '/b', size: 10, offset: 0, append: false, seed: 1 };
    const mixed = deriveExpectations(
      [mount, start, write, stop],
      [ok('mount'), ok('h-start'), ok('w'), ok('h-stop', output)],
      manifest,
      false,
      { caseSeed: 5 },
    ).expectations;
    t.match(mixed.files[0]?.unchecked, /step "w" changed the file while writer step "h-start" was running/);
  },
);

t.test('a write that failed in the guest (ENOSPC) is no complete op: nothing after it is exact', async (t) => {
  const write: Step = { kind: 'write', name: 'w', path: '/new', size: 1000, offset: 0, append: false, seed: 7 };
  const records: StepRecord[] = [
    ok('mount'),
    { name: 'w', kind: 'write', exitCode: 1, output: 'qcrash-io: write: No space left on device' },
    ok('sync'),
  ];
  const r = deriveExpectations([mount, write, sync], records, manifest, false).expectations;
  t.match(r.files, [{ path: '/new', ops: [{ kind: 'write', complete: false }] }]);
});

t.test(
  'the readback after the ioctl parses: flags and st_blocks, or the errno of a failed call; older output has none',
  async (t) => {
    const r = parseMigrateOutput(
      'migrate',
      'migrate file 0 0 /a flags=0x0 blocks=24\nmigrate dir -1 11 /d flags=0x80000 blocks=e5\nmigrate file 0 0 /b flags=e22 blocks=8\nmigrate file 0 0 /c\n',
    );
    t.same(r.files, [
      { step: 'migrate', path: '/a', type: 'file', ret: 0, errno: 0, readback: { flags: { value: 0 }, blocks: { value: 24 } } },
      {
        step: 'migrate',
        path: '/d',
        type: 'dir',
        ret: -1,
        errno: 11,
        readback: { flags: { value: 0x80000 }, blocks: { errno: 5 } },
      },
      { step: 'migrate', path: '/b', type: 'file', ret: 0, errno: 0, readback: { flags: { errno: 22 }, blocks: { value: 8 } } },
      { step: 'migrate', path: '/c', type: 'file', ret: 0, errno: 0 },
    ]);
    t.equal(readbackVerdict(r.files[0]!), 'lied', '0 with no FS_EXTENT_FL');
    t.equal(readbackVerdict(r.files[1]!), 'lied', 'a refusal with FS_EXTENT_FL');
    t.equal(readbackVerdict(r.files[2]!), 'unknown', 'GETFLAGS failed');
    t.equal(readbackVerdict(r.files[3]!), 'unknown', 'no readback');
    t.equal(readbackVerdict({ ret: 0, errno: 0, readback: { flags: { value: 0x80000 }, blocks: { value: 24 } } }), 'truthful');
    t.equal(
      readbackVerdict({ ret: -1, errno: 11, readback: { flags: { value: 0x1000 }, blocks: { value: 24 } } }),
      'truthful',
      'EAGAIN and still block-mapped',
    );
  },
);

t.test(
  'the expectations follow the readback, not the return value: an ioctl that lied leaves a file that must stay block-mapped',
  async (t) => {
    const steps = [mount, migrateA, sync];
    const lied = deriveExpectations(
      steps,
      [ok('mount'), ok('migrate', 'migrate file 0 0 /a flags=0x0 blocks=8\n'), ok('sync')],
      manifest,
      true,
    ).expectations;
    t.same(lied.mustBeExtents, [], 'returned 0, read back block-mapped: no durable migration to lose (no not-durable)');
    t.same(lied.mustBeBlocks, ['/a'], 'it must stay block-mapped');
    const truthful = deriveExpectations(
      steps,
      [ok('mount'), ok('migrate', 'migrate file 0 0 /a flags=0x80000 blocks=8\n'), ok('sync')],
      manifest,
      true,
    ).expectations;
    t.same(
      [truthful.mustBeExtents, truthful.mustBeBlocks],
      [['/a'], []],
      'read back extent-mapped: must be extent-mapped once synced',
    );
    const refusedButConverted = deriveExpectations(
      steps,
      [ok('mount'), ok('migrate', 'migrate file -1 11 /a flags=0x80000 blocks=8\n'), ok('sync')],
      manifest,
      true,
    ).expectations;
    t.same(
      [refusedButConverted.mustBeExtents, refusedButConverted.mustBeBlocks],
      [['/a'], []],
      'refused, read back extent-mapped: the kernel converted it',
    );
    const unread = deriveExpectations(
      steps,
      [ok('mount'), ok('migrate', 'migrate file 0 0 /a flags=e5 blocks=8\n'), ok('sync')],
      manifest,
      true,
    ).expectations;
    t.same(unread.mustBeExtents, ['/a'], 'GETFLAGS failed: the return value decides, as before the readback');
  },
);

t.test('a rewriter with an offset over a recipe file: its range and the stop report are kept', async (t) => {
  const start: Step = {
    kind: 'writer',
    name: 'b-start',
    mode: 'buffered',
    path: '/a',
    size: 5000,
    offset: 8192,
    paceUs: 0,
    action: 'start',
  };
  const stop: Step = { ...start, name: 'b-stop', action: 'stop' };
  const report = parseWriterOutput('writer buffered rounds=3 size=8192 offset=8192\n');
  t.same(report, { kind: 'writer', mode: 'buffered', rounds: 3, size: 8192, offset: 8192 });
  t.same(
    parseWriterOutput('writer mmap rounds=2 size=4096\n'),
    { kind: 'writer', mode: 'mmap', rounds: 2, size: 4096, offset: 0 },
    'a guest before offsets: 0',
  );
  const r = deriveExpectations(
    [mount, start, migrateA, stop, sync],
    [ok('mount'), ok('b-start'), migratedA, ok('b-stop', 'writer buffered rounds=3 size=8192 offset=8192\n'), ok('sync')],
    manifest,
    false,
    { caseSeed: 9 },
  ).expectations;
  t.same(
    r.files,
    [
      {
        path: '/a',
        origin: 'recipe',
        durable: 1,
        ops: [{ kind: 'writer', step: 'b-start', mode: 'buffered', offset: 8192, size: 8192, seed: 9, rounds: 3 }],
      },
    ],
    'the size rounded up to a page, over the recipe file',
  );
});
