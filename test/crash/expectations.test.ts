import t from 'tap';
import { coveredBy, deriveExpectations, type StepRecord } from '../../harness/crash/expectations.ts';
import type { Manifest } from '../../harness/image/manifest.ts';
import type { Step } from '../../harness/scenario/model.ts';
import { generatedBytes } from '../../harness/guest/content.ts';
import { sha256 } from '../../harness/util/hash.ts';

// What the acknowledged steps made durable, for the content oracle: a pure
// function of the scenario's steps, the agent's acknowledgements and the
// recipe's manifest.
const entry = (path: string, type: 'file' | 'dir' | 'symlink', mapping: 'blocks' | 'none' | 'fast-symlink' = 'blocks') => ({ path, type, size: 4096, ino: 0, mapping });
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
    entry('/d/sub', 'dir'),
    entry('/d/sub/y', 'file'),
    entry('/d/link', 'symlink', 'fast-symlink'),
    entry('/d/empty', 'file', 'none'),
    entry('/dx', 'file'),
  ],
};
const mount: Step = { kind: 'mount', name: 'mount', options: [] };
const migrateA: Step = { kind: 'migrate', name: 'migrate', paths: ['/a'], recursive: false };
const migrateD: Step = { kind: 'migrate', name: 'migrate-d', paths: ['/d'], recursive: true };
const sync: Step = { kind: 'sync', name: 'sync' };
const ok = (...names: string[]): StepRecord[] => names.map((name) => ({ name, kind: 'sync', exitCode: 0 }));

t.test('a migration is expected extent-mapped only once a later sync completed', async (t) => {
  const steps = [mount, migrateA, sync];
  t.same(deriveExpectations(steps, ok('mount', 'migrate'), manifest, false).expectations.mustBeExtents, [], 'killed before the sync: nothing durable');
  t.same(deriveExpectations(steps, ok('mount', 'migrate', 'sync'), manifest, false).expectations.mustBeExtents, ['/a']);
  t.same(deriveExpectations(steps, ok('mount', 'migrate'), manifest, true).expectations.mustBeExtents, ['/a'], 'a clean shutdown unmounts: durable too');
});

t.test('a failed chattr expects nothing, whatever follows', async (t) => {
  const records: StepRecord[] = [...ok('mount'), { name: 'migrate', kind: 'migrate', exitCode: 1 }, ...ok('sync')];
  t.same(deriveExpectations([mount, migrateA, sync], records, manifest, true).expectations.mustBeExtents, []);
});

t.test('fsync makes durable only the file it names', async (t) => {
  const fsyncA: Step = { kind: 'fsync', name: 'fsync', path: '/a' };
  const fsyncB: Step = { kind: 'fsync', name: 'fsync-b', path: '/b' };
  t.same(deriveExpectations([mount, migrateA, fsyncB], ok('mount', 'migrate', 'fsync-b'), manifest, false).expectations.mustBeExtents, []);
  t.same(deriveExpectations([mount, migrateA, fsyncA], ok('mount', 'migrate', 'fsync'), manifest, false).expectations.mustBeExtents, ['/a']);
});

t.test('a recursive migration covers the block-mapped files and directories below it, not symlinks or empty files', async (t) => {
  const r = deriveExpectations([mount, migrateD, sync], ok('mount', 'migrate-d', 'sync'), manifest, false);
  t.same(r.expectations.mustBeExtents, ['/d', '/d/sub', '/d/sub/y', '/d/x']);
  t.same(r.migrated, [{ path: '/d', recursive: true }]);
});

t.test('coveredBy: the path itself, below it only when recursive, never a sibling sharing a prefix', async (t) => {
  t.ok(coveredBy('/d', { path: '/d', recursive: false }));
  t.notOk(coveredBy('/d/x', { path: '/d', recursive: false }), 'chattr +e /d does not touch /d/x');
  t.ok(coveredBy('/d/sub/y', { path: '/d', recursive: true }));
  t.notOk(coveredBy('/dx', { path: '/d', recursive: true }), '/dx is not below /d');
  t.ok(coveredBy('/anything', { path: '/', recursive: true }));
});

t.test('a new file written and fsynced is expected byte for byte; unsynced it is volatile', async (t) => {
  const write: Step = { kind: 'write', name: 'w', path: '/new', size: 1000, offset: 0, append: false, seed: 7 };
  const fsync: Step = { kind: 'fsync', name: 'fs', path: '/new' };
  const durable = deriveExpectations([mount, write, fsync], ok('mount', 'w', 'fs'), manifest, false).expectations;
  t.same(durable.written, [{ path: '/new', size: 1000, sha256: sha256(generatedBytes(7, 1000)) }]);
  t.same(durable.volatile, []);
  const lost = deriveExpectations([mount, write, fsync], ok('mount', 'w'), manifest, false).expectations;
  t.same(lost.written, []);
  t.same(lost.volatile, ['/new']);
});

t.test('a step still running at the kill leaves its file volatile', async (t) => {
  const write: Step = { kind: 'write', name: 'w', path: '/new', size: 1000, offset: 0, append: false, seed: 7 };
  const r = deriveExpectations([mount, write], [...ok('mount'), { name: 'w', kind: 'write' }], manifest, false).expectations;
  t.same(r.volatile, ['/new']);
  t.same(r.written, []);
});

t.test('a write that failed in the guest expects no exact bytes', async (t) => {
  const write: Step = { kind: 'write', name: 'w', path: '/new', size: 1000, offset: 0, append: false, seed: 7 };
  const r = deriveExpectations([mount, write, sync], [...ok('mount'), { name: 'w', kind: 'write', exitCode: 1, output: 'qcrash-io: write: No space left on device' }, ...ok('sync')], manifest, false).expectations;
  t.same(r.written, []);
  t.same(r.volatile, ['/new']);
});
