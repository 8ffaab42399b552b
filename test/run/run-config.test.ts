import t from 'tap';
import { join, resolve } from 'node:path';
import { ConfigError } from '../../harness/util/errors.ts';
import { RunStore } from '../../harness/results/store.ts';
import type { RunConfig, RunMeta } from '../../harness/results/run.ts';
import { checkResumedInputs, newRun, resolveRunConfig, resumedRun } from '../../harness/run/run-config.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { fakeKernel } from '../helpers/fake-suite.ts';

// The runner's first step: the run a call makes (from its options) or
// finishes (from its folder's run.json), and what a resume refuses.
const tmp = await TempDir.create('run-config-test');
t.teardown(() => tmp.remove());

const config: RunConfig = { inputs: ['/s/a.yaml'], kernel: 'stock', keep: 'failed', snapshots: true };
function meta(extra: Partial<RunMeta> = {}): RunMeta {
  return {
    schema: 'qcrash-run/1',
    runId: 'r-1',
    startedAt: '2026-01-01T00:00:00Z',
    host: 'h',
    kernel: { id: 'stock', release: '6.1', kind: 'stock' },
    versions: {} as RunMeta['versions'],
    seed: 42,
    accel: 'tcg',
    scenarios: [],
    config,
    qcrash: { version: '0.1.0', build: 'b1' },
    ...extra,
  };
}

t.test('a new run: paths made absolute, the defaults filled in, a folder of its own', async (t) => {
  const run = await newRun({ inputs: ['scenarios/a.yaml'], kernel: 'build/bzImage', seed: 7, out: 'out/x' });
  t.same(run.config, {
    inputs: [resolve('scenarios/a.yaml')],
    kernel: resolve('build/bzImage'),
    keep: 'failed',
    snapshots: true,
  });
  t.equal(run.seed, 7);
  t.equal(run.dir, resolve('out/x'));
  t.equal(run.resumed, undefined);
  const stock = await newRun({
    inputs: [],
    kernel: fakeKernel('k1'),
    filter: ['a'],
    recovery: ['e2fsck'],
    keep: 'none',
    snapshots: false,
    shard: { index: 2, total: 3 },
  });
  t.same(
    stock.config,
    {
      inputs: [],
      kernel: 'k1',
      filter: ['a'],
      recovery: ['e2fsck'],
      keep: 'none',
      snapshots: false,
      shard: { index: 2, total: 3 },
    },
    'a resolved kernel is recorded by its id',
  );
  t.ok(Number.isInteger(stock.seed), 'a seed is drawn when none is given');
  t.match(stock.dir, new RegExp(`${stock.runId}$`), 'the default folder is named after the run id');
});

t.test('--durations without --shard is refused', async (t) => {
  await t.rejects(newRun({ inputs: [], kernel: 'stock', durationsFrom: '/nowhere' }), {
    constructor: ConfigError,
    message: /--durations \/nowhere balances shards: give it together with --shard I\/N/,
  });
});

t.test('a resumed run is the run its run.json configured', async (t) => {
  const dir = join(tmp.path, 'resumable');
  await RunStore.create(dir, meta());
  const run = await resolveRunConfig({ inputs: [], kernel: 'other', resume: dir, seed: 1 }, 'b1');
  t.same(run.config, config, 'the options do not change it');
  t.equal(run.seed, 42);
  t.equal(run.runId, 'r-1');
  t.equal(run.dir, dir);
  t.equal(run.resumed?.named, dir);
});

t.test('a resume refuses another qcrash build and a run that did not record its configuration', async (t) => {
  const dir = join(tmp.path, 'other-build');
  await RunStore.create(dir, meta());
  await t.rejects(resumedRun(dir, 'b2'), {
    constructor: ConfigError,
    message: /was made by another qcrash build \(b1; this one is b2\)/,
  });
  const old = join(tmp.path, 'old');
  const { config: _c, ...noConfig } = meta();
  await RunStore.create(old, noConfig);
  await t.rejects(resumedRun(old, 'b1'), {
    constructor: ConfigError,
    message: /did not record its configuration: it cannot be resumed/,
  });
  await t.rejects(resumedRun(join(tmp.path, 'none'), 'b1'), { constructor: ConfigError, message: /is not a qcrash run folder/ });
});

t.test('a resume refuses a kernel other than the one the run started on', async (t) => {
  const dir = join(tmp.path, 'kernel');
  await RunStore.create(dir, meta());
  const run = await resumedRun(dir, 'b1');
  t.doesNotThrow(() => checkResumedInputs(run.resumed!, run.config, [], fakeKernel('stock')));
  t.throws(() => checkResumedInputs(run.resumed!, run.config, [], fakeKernel('k9')), {
    constructor: ConfigError,
    message: /ran on kernel stock; --kernel stock is now k9/,
  });
});
