import t from 'tap';
import { validateReport } from '../../harness/validate/validate.ts';
import type { ValidateResult, SignatureVerdict } from '../../harness/validate/model.ts';
import type { KernelInfo } from '../../harness/kernel/kernel.ts';
import type { RunSummary } from '../../harness/results/run.ts';
import { formatSignature, type Signature } from '../../harness/results/signature.ts';

// validate's text report ends with a block the patch's author pastes under
// the mail's `---` line: kernels, scenarios, crash states checked, seed, and
// what the patch removed or introduced. Built here on constructed results.
const kernel = (id: string): KernelInfo => ({
  id,
  kind: 'built',
  release: '6.1.192+',
  bzImage: `/k/${id}/bzImage`,
  builtinDrivers: true,
});

function summary(k: KernelInfo, scenarios: Array<[string, string]>, total: number, seed = 7): RunSummary {
  return {
    schema: 'qcrash-run/1',
    runId: `run-${k.id}`,
    startedAt: '2026-12-06T00:00:00Z',
    host: 'test',
    kernel: { id: k.id, release: k.release, kind: k.kind },
    versions: { qemu: '7.2.0', e2fsprogs: '1.47.0' } as RunSummary['versions'],
    seed,
    accel: 'tcg',
    scenarios: scenarios.map(([suite, name]) => ({
      name: `${suite}/${name}`,
      file: `scenarios/${suite}/${name}.yaml`,
      hash: name,
      suite,
    })),
    counts: { total, pass: total, fail: 0, error: 0, notReached: 0 },
    cases: [],
  };
}

const sig = (scenario: string, code: string): string =>
  formatSignature({ scenario, point: 'no-kill', recovery: 'e2fsck', class: 'durability', code } satisfies Signature);
const verdict = (s: string, confirmed: number): SignatureVerdict => ({
  signature: s,
  sig: { scenario: 'x', point: 'p', recovery: '-', class: 'c', code: 'k' },
  caseIds: ['x/p/r1'],
  confirmed,
  reruns: 2,
  verdict: confirmed === 2 ? 'introduced' : 'flaky',
});

function result(o: Partial<ValidateResult> & { scenarios: Array<[string, string]>; totals?: [number, number] }): ValidateResult {
  const b = kernel('build-aaaa'),
    p = kernel('build-bbbb');
  const [tb, tp] = o.totals ?? [9, 9];
  return {
    baseline: { kernel: b, summary: summary(b, o.scenarios, tb), dir: '/r/baseline' },
    patched: { kernel: p, summary: summary(p, o.scenarios, tp), dir: '/r/patched' },
    introduced: o.introduced ?? [],
    flaky: o.flaky ?? [],
    removed: o.removed ?? [],
    unchanged: o.unchanged ?? [],
    notJudged: o.notJudged ?? { baseline: [], patched: [] },
    dir: '/r',
    ...(o.shard ? { shard: o.shard } : {}),
    ...(o.problems ? { problems: o.problems } : {}),
  };
}

/** The report's lines after the paste heading (none when it has no block). */
function block(text: string): string[] {
  const lines = text.trimEnd().split('\n');
  const at = lines.indexOf("For the patch's mail, under its '---' line:");
  return at < 0 ? [] : lines.slice(at + 2);
}

const knownBugs: Array<[string, string]> = [
  ['known-bugs', 'chattr-eagain-lost'],
  ['known-bugs', 'extent-len-32769-1k'],
];

t.test('a fix: what it removed (by scenario and point), nothing introduced, the block last', async (t) => {
  const removed = [
    sig('known-bugs/chattr-eagain-lost', 'not-durable'),
    sig('known-bugs/extent-len-65536-1k', 'ext4-error'),
    sig('known-bugs/extent-len-65536-1k', 'not-durable'),
  ];
  const text = validateReport(
    result({ scenarios: knownBugs, removed, unchanged: [sig('known-bugs/extent-len-32769-1k', 'content-changed')] }),
  );
  t.same(block(text), [
    'qcrash validate (ext4 block-map to extent migration, chattr +e):',
    '  kernels: 6.1.192+ (build-aaaa) without the patch, 6.1.192+ (build-bbbb) with it',
    '  scenarios: known-bugs (2): chattr-eagain-lost, extent-len-32769-1k',
    '  crash states checked: 9 on each kernel, seed 7',
    '  removed by the patch: 3',
    '    known-bugs/chattr-eagain-lost no-kill: not-durable',
    '    known-bugs/extent-len-65536-1k no-kill: ext4-error, not-durable',
    '  introduced by the patch: none',
    '  left as they were: 1',
  ]);
  t.ok(text.indexOf('Tested-by: qcrash') < text.indexOf("under its '---' line"), 'after the verdict and the Tested-by line');
});

t.test('a regression: introduced and flaky named, state counts per kernel, cases that judged nothing', async (t) => {
  const text = validateReport(
    result({
      scenarios: knownBugs,
      totals: [9, 11],
      introduced: [verdict('known-bugs/extent-len-32769-1k | no-kill | e2fsck | corruption | 0x050005', 2)],
      flaky: [verdict('known-bugs/chattr-eagain-lost | no-kill | - | kernel | ext4-error', 1)],
      notJudged: { baseline: [], patched: ['known-bugs/chattr-eagain-lost/no-kill/r2'] },
    }),
  );
  const lines = block(text);
  t.ok(lines.includes('  crash states checked: 9 without the patch, 11 with it, seed 7'));
  t.ok(lines.includes('  removed by the patch: none'));
  t.same(lines.slice(lines.indexOf('  introduced by the patch: 1'), lines.indexOf('  introduced by the patch: 1') + 2), [
    '  introduced by the patch: 1',
    '    known-bugs/extent-len-32769-1k no-kill: 0x050005',
  ]);
  t.same(
    lines.slice(
      lines.indexOf('  new but not on every rerun (flaky): 1'),
      lines.indexOf('  new but not on every rerun (flaky): 1') + 2,
    ),
    ['  new but not on every rerun (flaky): 1', '    known-bugs/chattr-eagain-lost no-kill: ext4-error'],
  );
  t.ok(lines.includes('  cases that judged nothing (error or not reached): 0 without the patch, 1 with it'));
});

t.test('a large suite: scenarios counted per suite, long lists cut', async (t) => {
  const scenarios = Array.from({ length: 12 }, (_, i): [string, string] => [i < 10 ? 'default' : 'limits', `s${i}`]);
  const removed = Array.from({ length: 11 }, (_, i) => sig(`s${i}`, 'content-changed'));
  const lines = block(validateReport(result({ scenarios, removed })));
  t.ok(lines.includes('  scenarios: default (10), limits (2)'));
  t.ok(lines.includes('  removed by the patch: 11'));
  t.ok(lines.includes('    ... and 3 more (see the full report)'));
  t.equal(lines.filter((l) => l.startsWith('    s')).length, 8, 'eight named');
});

t.test('no block without a verdict: a shard, or a merge with parts missing', async (t) => {
  t.same(block(validateReport(result({ scenarios: knownBugs, shard: { index: 1, total: 2 } }))), []);
  t.same(block(validateReport(result({ scenarios: knownBugs, problems: ['shard 2 missing'] }))), []);
});
