import t from 'tap';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validatePatch } from '../../harness/validate/validate.ts';
import { scenariosDir } from '../../harness/util/paths.ts';
import { launchBrowser, openFile } from '../helpers/browser.ts';
import { commentOnlyPatch } from '../helpers/patches.ts';

// `qcrash validate` against the planted bugs in ../shared/mutants, on the
// minimal 6.1 kernel built from linux-source-6.1. Each mutant runs the
// scenario of scenarios/validate that targets it (to keep CI short); the
// comment-only patch runs the whole of scenarios/validate, three times.
// `npm run mutants` runs every mutant against the whole directory.
const dir = await mkdtemp(join(tmpdir(), 'mutants-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const mutants = new URL('../../../shared/mutants/', import.meta.url).pathname;
const validateDir = join(scenariosDir, 'validate');

for (const [file, scenario, expected] of [
  ['03-no-mark-dirty-after-swap.patch', 'durability', /durability \| .* \| data \| not-durable/],
  ['02-tmp-inode-nlink-late.patch', 'commit-states', /commit-states \| .* \| e2fsck \| corruption \| 0x011002/],
  // Freed indirect blocks the inode still maps: "+" block bitmap differences and a short i_blocks.
  ['04-free-ind-before-swap.patch', 'mmap-race', /mmap-race \| .* \| e2fsck \| corruption \| (0x050005|0x01000d)/],
] as const) {
  t.test(`validate flags ${file}`, { timeout: 1800_000 }, async (t) => {
    const scenarios = [join(validateDir, `${scenario}.yaml`)];
    const r = await validatePatch({ patches: [join(mutants, file)], scenarios, seed: 1, confirmRuns: 1, out: join(dir, file) });
    // Mutant 02 shows only when a commit lands while the temporary inode
    // holds the file's blocks: which crash states catch it varies with commit
    // timing, so a signature may come back as flaky on its confirmation rerun.
    // Either way it is a finding the baseline does not have.
    const fresh = [...r.introduced, ...r.flaky].map((v) => v.signature);
    t.ok(fresh.length > 0, `new findings: ${fresh.join('; ')}`);
    t.ok(
      fresh.some((s) => expected.test(s)),
      `a new finding matching ${expected}`,
    );
    if (!file.startsWith('02'))
      t.ok(
        r.introduced.some((v) => expected.test(v.signature)),
        'confirmed on rerun',
      );
    const baselineFindings = r.baseline.summary.cases.flatMap((c) => c.failing);
    t.same(baselineFindings, [], 'the baseline kernel has no failing finding');
    if (file.startsWith('03')) {
      // The page validate wrote for this real run, in a real browser: what it says is what validate judged.
      await using browser = await launchBrowser();
      const p = await openFile(browser.context, join(r.dir, 'validate.html'));
      t.same(
        [...p.consoleErrors, ...p.pageErrors, ...p.failedRequests],
        [],
        'validate.html loads with no error and no failed request',
      );
      const shown = await p.page
        .locator('#introduced tr[data-signature]')
        .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-signature')));
      t.same(
        shown.sort(),
        r.introduced.map((v) => v.signature).sort(),
        'the page lists the introduced signatures validate confirmed',
      );
      t.match(await p.page.textContent('#patch-subjects'), /Mutant 03/i, 'and the patch subject');
      t.equal(await p.page.locator('#tested-by').count(), 0, 'no Tested-by line: the patch regressed');
      await p.page.screenshot({ path: join(dir, 'validate-mutant-03.png'), fullPage: true });
    }
  });
}

t.test('a comment-only patch comes out clean, three times over', { timeout: 1800_000 }, async (t) => {
  const patch = join(dir, 'comment.patch');
  await writeFile(patch, commentOnlyPatch);
  for (const seed of [1, 2, 3]) {
    const r = await validatePatch({
      patches: [patch],
      scenarios: [validateDir],
      seed,
      confirmRuns: 1,
      out: join(dir, `comment-${seed}`),
    });
    t.same(
      r.introduced.map((v) => v.signature),
      [],
      `seed ${seed}: nothing introduced`,
    );
  }
});
