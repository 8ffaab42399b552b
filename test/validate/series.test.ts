import t from 'tap';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { validateKernels } from '../../harness/validate/validate.ts';
import { seriesReport, validateSeriesKernels } from '../../harness/validate/series.ts';
import type { SeriesPatchRef } from '../../harness/validate/model.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { FakeLauncher, type FakeMachine } from '../helpers/fake-machine.ts';
import { freeBlockInUse } from '../helpers/damage.ts';
import { launchBrowser, openFile } from '../helpers/browser.ts';
import { projectRoot } from '../../harness/util/paths.ts';
import { qcrash } from '../helpers/cli.ts';
import { fakeKernel, writeStepsScenario } from '../helpers/fake-suite.ts';

// validate --series's bookkeeping through the real runner, store and
// oracles, with scripted machines standing for the kernels of a series:
// each "kernel" damages the crash image (a real debugfs change the real
// e2fsck finds, 0x050005) after chosen steps. The same on real kernels:
// test/kernel/series.test.ts. The page's screenshot goes to
// results/html-test/validate-series.png.
const shots = join(projectRoot, 'results', 'html-test');
const tmp = await TempDir.create('series-test');
t.teardown(() => tmp.remove());
const fake = (id: string) => fakeKernel(id);
const baseline = fake('baseline');
const patch = (index: number, subject: string): SeriesPatchRef => ({
  index,
  total: 3,
  subject,
  file: `/series/000${index}.patch`,
  origin: `/series/000${index}.patch`,
  sha256: String(index),
});
const series = (prefix: string) => [
  { patch: patch(1, '[PATCH 1/3] ext4: a comment'), kernel: fake(`${prefix}-1`) },
  { patch: patch(2, '[PATCH 2/3] ext4: forget to dirty the inode'), kernel: fake(`${prefix}-2`) },
  { patch: patch(3, '[PATCH 3/3] ext4: dirty everything again'), kernel: fake(`${prefix}-3`) },
];

const scenario = await writeStepsScenario(join(tmp.path, 'series.yaml'));
const sig = (point: string) => `series | ${point} | e2fsck | corruption | 0x050005`;

/** Machines whose kill damages the image when `damaged(kernel id, last command, kills so far on that kernel and command)` says so. */
function machinesFor(damaged: (kernel: string, last: string | undefined, nth: number) => boolean) {
  const kills = new Map<string, number>();
  return new FakeLauncher((spec: MachineSpec) => ({
    onKill: (m: FakeMachine) => {
      const last = m.commands.at(-1);
      const key = `${spec.kernel.id} ${last}`;
      const nth = (kills.get(key) ?? 0) + 1;
      kills.set(key, nth);
      if (damaged(spec.kernel.id, last, nth)) freeBlockInUse(m.spec.disk.path);
    },
  }));
}

t.test(
  'a finding the middle patch introduces and the last one hides: the series as one passes, patch by patch it does not',
  async (t) => {
    // Only the kernel with patches 1-2 loses the update after sync.
    const machines = machinesFor((k, last) => k === 'hide-2' && last === 'sync');
    const steps = series('hide');
    const whole = await validateKernels({
      baseline,
      patched: steps[2]!.kernel,
      scenarios: [scenario],
      seed: 1,
      jobs: 1,
      confirmRuns: 1,
      out: join(tmp.path, 'whole'),
      machines,
      snapshots: false,
    });
    t.same(whole.introduced, [], 'judged as one patch, the series introduces nothing');

    const out = join(tmp.path, 'hide');
    const r = await validateSeriesKernels({
      baseline,
      steps,
      scenarios: [scenario],
      seed: 1,
      jobs: 1,
      confirmRuns: 2,
      out,
      machines,
      snapshots: false,
      skipped: [{ origin: '/series/0000.patch', subject: '[PATCH 0/3] ext4: a series', why: 'cover letter' }],
    });
    t.same(
      r.steps.map((s) => s.introduced.map((v) => [v.signature, v.confirmed, v.reruns])),
      [[], [[sig('after-sync'), 2, 2]], []],
      'patch 2 introduced it, confirmed on 2 of 2 reruns',
    );
    t.same(
      r.steps.map((s) => s.removed),
      [[], [], [sig('after-sync')]],
      'patch 3 removed it',
    );
    t.same(
      r.findings.map((f) => [f.signature, f.seen, f.introducedBy, f.hidden?.by, f.hidden?.absentIn, f.hidden?.reruns]),
      [[sig('after-sync'), [false, false, true, false], 2, 3, 2, 2]],
      'hidden by patch 3: absent from its run and both rechecks',
    );
    t.same(
      r.steps.map((s) => s.confirmDirs.length),
      [0, 2, 0],
    );
    const kernels = machines.machines.map((m) => m.spec.kernel.id);
    t.equal(kernels.filter((k) => k === 'hide-2').length, 3 + 2, 'patch 2: three cases, then the new one twice');
    t.equal(
      kernels.filter((k) => k === 'hide-3').length,
      3 + 3 + 2,
      'patch 3: three cases as the whole series, three in the series, then the hidden one rechecked twice',
    );

    const text = await readFile(join(out, 'validate.txt'), 'utf8');
    t.equal(text, seriesReport(r));
    t.match(
      text,
      /^patch 2\/3: \[PATCH 2\/3\] ext4: forget to dirty the inode\n {2}cases: 2 passed, 1 failed, 0 not run\/reached\n {2}INTRODUCED by this patch \(confirmed on rerun\): 1\n {4}series \| after-sync \| e2fsck \| corruption \| 0x050005 {2}\[series\/after-sync\/r1\]$/m,
    );
    t.match(text, /^ {2}removed by this patch: 1\n {4}series \| after-sync .* \(introduced by patch 2\/3\)$/m);
    t.match(
      text,
      /^ {2}series \| after-sync \| e2fsck \| corruption \| 0x050005: INTRODUCED by patch 2\/3, HIDDEN by patch 3\/3: absent from its run and 2\/2 rerun\(s\)/m,
    );
    t.match(text, /^Result: REGRESSION: patch 2\/3 introduced findings/m);
    t.match(
      text,
      /^1 finding\(s\) introduced on the way are hidden by a later patch: the kernel with the whole series does not show them\.$/m,
    );
    t.match(text, /^ {2}skipped \(cover letter\): \[PATCH 0\/3\] ext4: a series$/m);
    // The mail ends with a Tested-by for patches 1 and 3 only, each under the patch it is for.
    const tail = text.slice(text.indexOf('Tested-by, for'));
    t.same(
      tail.split('\n').filter((l) => l.startsWith('patch ') || l.startsWith('Tested-by:')),
      [
        'patch 1/3: [PATCH 1/3] ext4: a comment',
        'Tested-by: qcrash (3 crash states of ext4_ext_migrate, on top of baseline fake-baseline)',
        'patch 3/3: [PATCH 3/3] ext4: dirty everything again',
        'Tested-by: qcrash (3 crash states of ext4_ext_migrate, on top of patches 1-2 and baseline fake-baseline)',
      ],
    );
    t.notMatch(text.slice(0, text.indexOf('Tested-by, for')), /Tested-by:/, 'no Tested-by line before the section');
    const json = JSON.parse(await readFile(join(out, 'series.json'), 'utf8')) as {
      findings: unknown[];
      steps: Array<{ patch: { index: number } }>;
    };
    t.same(json.findings, r.findings);
    t.same(
      json.steps.map((s) => s.patch.index),
      [1, 2, 3],
    );

    // validate.html says the same, opened in Debian's chromium.
    await using browser = await launchBrowser();
    const p = await openFile(browser.context, join(out, 'validate.html'));
    t.same([p.consoleErrors, p.pageErrors, p.failedRequests], [[], [], []], 'the page loads cleanly');
    t.match(
      await p.page.textContent('#validate-verdict'),
      /REGRESSION: introduced by patch 2\/3, 1 finding\(s\) hidden by a later patch/,
    );
    t.match(await p.page.textContent('#validate-hidden'), /^1 finding\(s\) introduced on the way are hidden by a later patch/);
    t.same(
      await p.page
        .locator('#series-patches tr[data-patch]')
        .evaluateAll((trs) => trs.map((tr) => [tr.getAttribute('data-patch'), tr.getAttribute('data-introduced')])),
      [
        ['1', '0'],
        ['2', '1'],
        ['3', '0'],
      ],
    );
    const row = p.page.locator(`#series-findings tr[data-signature="${sig('after-sync')}"]`);
    t.equal(await row.getAttribute('data-introduced-by'), '2');
    t.equal(await row.getAttribute('data-hidden-by'), '3');
    t.same(await row.locator('td[data-seen]').evaluateAll((tds) => tds.map((td) => td.getAttribute('data-seen'))), [
      'false',
      'false',
      'true',
      'false',
    ]);
    t.same(
      await p.page
        .locator('#patch-2-introduced tr[data-signature]')
        .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-signature'))),
      [sig('after-sync')],
    );
    t.match(await p.page.locator('#patch-2-introduced tr').last().textContent(), /2 \/ 2.*seen again.*seen again/);
    t.same(await p.page.locator('#tested-by .tested-by').allTextContents(), [
      'patch 1/3: [PATCH 1/3] ext4: a commentTested-by: qcrash (3 crash states of ext4_ext_migrate, on top of baseline fake-baseline)',
      'patch 3/3: [PATCH 3/3] ext4: dirty everything againTested-by: qcrash (3 crash states of ext4_ext_migrate, on top of patches 1-2 and baseline fake-baseline)',
    ]);
    await mkdir(shots, { recursive: true });
    await p.page.screenshot({ path: join(shots, 'validate-series.png'), fullPage: true });
    for (const raw of await p.page
      .locator('a[href]:not([href^="#"])')
      .evaluateAll((as) => as.map((a) => a.getAttribute('href')!))) {
      const file = new URL(raw, p.page.url()).pathname;
      t.ok(
        await readFile(decodeURIComponent(file)).then(
          () => true,
          () => false,
        ),
        `link resolves: ${raw}`,
      );
    }
  },
);

t.test('left, removed from the baseline, and a "hidden" finding that comes back on rerun', async (t) => {
  // The baseline has after-drop-caches; patch 1 adds after-mount (left to the
  // end); patch 2 removes after-drop-caches and adds after-sync, which patch
  // 3's run misses but its recheck sees again.
  const machines = machinesFor((k, last, nth) => {
    if (k === 'mix-b') return last === 'drop-caches';
    if (last === 'mount') return true;
    if (k === 'mix-1') return last === 'drop-caches';
    if (k === 'mix-2') return last === 'sync';
    return k === 'mix-3' && last === 'sync' && nth > 1;
  });
  const r = await validateSeriesKernels({
    baseline: fake('mix-b'),
    steps: series('mix'),
    scenarios: [scenario],
    seed: 1,
    jobs: 1,
    confirmRuns: 1,
    out: join(tmp.path, 'mix'),
    machines,
    snapshots: false,
  });
  t.same(
    r.steps.map((s) => [s.introduced.map((v) => v.sig.point), s.removed, s.unchanged]),
    [
      [['after-mount'], [], [sig('after-drop-caches')]],
      [['after-sync'], [sig('after-drop-caches')], [sig('after-mount')]],
      [[], [sig('after-sync')], [sig('after-mount')]],
    ],
  );
  const byPoint = new Map(r.findings.map((f) => [f.signature.split(' | ')[1], f]));
  t.same(
    [...byPoint.keys()],
    ['after-mount', 'after-sync', 'after-drop-caches'],
    "ordered by the patch that introduced them, then the baseline's",
  );
  t.same(byPoint.get('after-mount')!.seen, [false, true, true, true]);
  t.same(
    byPoint.get('after-sync')!.hidden,
    { by: 3, absentIn: 0, reruns: 1, dirs: [join(tmp.path, 'mix', 'patch-3-recheck-1')] },
    'seen again on the recheck: not hidden',
  );
  t.notOk(byPoint.get('after-drop-caches')!.introducedBy);
  const text = seriesReport(r);
  t.match(text, /after-mount .*: INTRODUCED by patch 1\/3, still there after patch 3\/3 \(seen on: 1, 2, 3\)/);
  t.match(
    text,
    /after-sync .*: INTRODUCED by patch 2\/3, missing from the run of patch 3\/3 but seen again on 1\/1 rerun\(s\) there: not hidden/,
  );
  t.match(text, /after-drop-caches .*: on the baseline already, gone after patch 2\/3 \(seen on: baseline, 1\)/);
  t.match(text, /^Result: REGRESSION: patch 1\/3, patch 2\/3 introduced findings/m);
  t.notMatch(text, /hidden by a later patch/);
  t.match(text, /Tested-by, for the patch\(es\) that introduced nothing \(3\/3\):\n\npatch 3\/3: .*\nTested-by: qcrash/);
});

t.test('bad input is exit 2 with what to do, before any kernel is built', async (t) => {
  const noPatch = await qcrash(['validate', '--series', scenario]);
  t.equal(noPatch.code, 2);
  t.match(noPatch.stderr, /--series needs the series: --patch FILE/);
  const both = await qcrash(['validate', '--series', '--mutants', tmp.path, '--patch', scenario, scenario]);
  t.equal(both.code, 2);
  t.match(both.stderr, /--series and --mutants do not go together/);
  const cover = new URL('../fixtures/series/b4-am.cover', import.meta.url).pathname;
  const onlyCover = await qcrash(['validate', '--series', '--patch', cover, '-o', join(tmp.path, 'cover-only'), scenario]);
  t.equal(onlyCover.code, 2);
  t.match(
    onlyCover.stderr,
    /no patch in .*b4-am\.cover: only mails without a diff \("\[PATCH 0\/2\] ext4: note two variables"\)/,
  );
  t.notMatch(onlyCover.stderr, /building/, 'nothing was built');
});
