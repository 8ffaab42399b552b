import t, { type Test } from 'tap';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { runKernelMatrix, kernelFolder } from '../../harness/run/kernel-matrix.ts';
import { matrixText, type Matrix } from '../../harness/report/matrix.ts';
import { compareRuns } from '../../harness/compare/compare.ts';
import { loadSummary } from '../../harness/results/store.ts';
import { ConfigError } from '../../harness/util/errors.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import type { MachineSpec } from '../../harness/vm/machine/machine.ts';
import { FakeLauncher } from '../helpers/fake-machine.ts';
import { freeBlockInUse } from '../helpers/damage.ts';
import { writeStepsScenario } from '../helpers/fake-suite.ts';
import { resolveKernel } from '../../harness/kernel/resolve.ts';
import { XMLParser } from 'fast-xml-parser';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { access } from 'node:fs/promises';

// `run --kernel a,b`: one run folder per kernel and the kernel x scenario
// matrix, with scripted machines standing for the two lines' stock kernels
// (resolved for real from /boot; never booted). The 6.12 "kernel" damages
// the image after sync: a finding on one line and not the other.
const tmp = await TempDir.create('kernel-matrix-test');
t.teardown(() => tmp.remove());
const scenario = await writeStepsScenario(join(tmp.path, 'steps.yaml'));
const machines = new FakeLauncher((spec: MachineSpec) => ({
  onKill: (m) => {
    if (spec.kernel.id.startsWith('stock-6.12') && m.commands.at(-1) === 'sync') freeBlockInUse(m.spec.disk.path);
  },
}));

t.test('folders by kernel spec', async (t) => {
  t.equal(kernelFolder('stock'), 'stock');
  t.equal(kernelFolder('stock:6.12'), 'stock-6.12');
  t.equal(kernelFolder('/x/arch/x86/boot/bzImage'), 'x_arch_x86_boot_bzImage');
});

t.test('each kernel runs into its own folder with the same case ids, and the matrix names the one-line finding', async (t) => {
  const out = join(tmp.path, 'm');
  const m = await runKernelMatrix({
    inputs: [scenario],
    kernels: ['stock', 'stock:6.12'],
    seed: 7,
    out,
    machines,
    snapshots: false,
  });
  t.same(
    m.runs.map((r) => r.label),
    ['stock', 'stock-6.12'],
  );
  t.same(
    m.runs.map((r) => r.summary.kernel.line),
    ['6.1', '6.12'],
  );
  t.same(
    m.runs[0]!.summary.cases.map((c) => c.id).sort(),
    m.runs[1]!.summary.cases.map((c) => c.id).sort(),
    'case ids are the same per kernel',
  );
  t.same(
    m.runs.map((r) => r.summary.seed),
    [7, 7],
  );
  const cells = m.matrix.cells['steps']!;
  t.same(cells['stock'], { total: 3, pass: 3, fail: 0, notJudged: 0 });
  t.same(cells['stock-6.12'], { total: 3, pass: 2, fail: 1, notJudged: 0 });
  t.equal(m.matrix.findings.length, 1);
  t.same(m.matrix.findings[0]!.seenOn, ['stock-6.12']);
  t.same(m.matrix.findings[0]!.notOn, ['stock']);
  const text = matrixText(m.matrix);
  t.match(text, /steps\s+pass 3\/3\s+FAIL 1\/3/);
  t.match(text, /only on stock-6\.12 \(not on stock\): steps \| after-sync \| e2fsck/);
  const onDisk = JSON.parse(await readFile(join(out, 'matrix.json'), 'utf8')) as Matrix;
  t.same(onDisk.cells, m.matrix.cells, 'matrix.json beside the runs');
  t.equal(await readFile(join(out, 'matrix.txt'), 'utf8'), text);
  await checkMatrixReports(t, out);
  // compare keeps the lines apart
  const [a, b] = await Promise.all(m.runs.map((r) => loadSummary(r.dir)));
  t.throws(() => compareRuns(a!, b!), ConfigError);
});

t.test('--kernel names a stock line by stock-6.12 or stock:6.12; an unknown line is a config error', async (t) => {
  t.equal((await resolveKernel('stock-6.12')).line, '6.12');
  t.equal((await resolveKernel('stock:6.12')).line, '6.12');
  t.equal((await resolveKernel('stock')).line, '6.1');
  await t.rejects(resolveKernel('stock-5.10'), ConfigError);
});

// ajv-formats is CommonJS: under ESM its function is the default export's default (as in test/engines/kcidb.test.ts).
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (a: Ajv) => Ajv;

/** matrix.html, matrix-junit.xml and matrix-kcidb.json of the stock / stock-6.12 run above: each shows the matrix and the 6.12-only finding. */
async function checkMatrixReports(t: Test, out: string): Promise<void> {
  const only = 'only on stock-6.12 (not on stock)';
  const html = await readFile(join(out, 'matrix.html'), 'utf8');
  t.match(
    html,
    /<table id="kernel-matrix"><thead><tr><th scope="col">scenario<\/th><th scope="col">stock<\/th><th scope="col">stock-6\.12<\/th>/,
  );
  t.match(
    html,
    /<tr data-scenario="steps"><th scope="row">steps<\/th><td><a class="verdict v-pass" href="stock\/report\.html"[^>]*>.*pass 3\/3<\/a><\/td><td><a class="verdict v-fail" href="stock-6\.12\/report\.html"[^>]*>.*FAIL 1\/3/,
  );
  t.match(
    html,
    /<ul id="findings-split"><li data-seen-on="stock-6\.12" data-not-on="stock"><strong>only on stock-6\.12 \(not on stock\)<\/strong>: <span class="mono">steps \| after-sync \| e2fsck/,
  );
  for (const k of ['stock', 'stock-6.12'])
    await t.resolves(access(join(out, k, 'report.html')), `matrix.html links to ${k}/report.html`);

  // JUnit, read as CI systems do (reporters.test.ts): a testsuite per kernel and scenario, the kernel in its properties.
  const junit = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '',
    isArray: (n) => ['testsuite', 'testcase', 'property'].includes(n),
  }).parse(await readFile(join(out, 'matrix-junit.xml'), 'utf8')) as {
    testsuites: {
      tests: string;
      failures: string;
      testsuite: Array<{
        name: string;
        properties: { property: Array<{ name: string; value: string }> };
        testcase: Array<{ classname: string; failure?: { '#text': string } }>;
      }>;
    };
  };
  const suites = junit.testsuites.testsuite;
  t.same(
    suites.map((s) => s.name),
    ['stock: steps', 'stock-6.12: steps'],
  );
  t.same(
    suites.map((s) => s.properties.property.find((p) => p.name === 'kernel.line')?.value),
    ['6.1', '6.12'],
  );
  t.equal(Number(junit.testsuites.tests), 6);
  t.equal(Number(junit.testsuites.failures), 1);
  const failed = suites[1]!.testcase.filter((c) => c.failure);
  t.equal(failed.length, 1);
  t.match(failed[0]!.classname, /^stock-6\.12\./);
  t.match(failed[0]!.failure!['#text'], `${only}: steps | after-sync | e2fsck`);

  // KCIDB against its schema (as kcidb.test.ts): both kernels' builds, a test per case, the one-line finding in misc.
  const schema = JSON.parse(
    await readFile(new URL('../../schemas/kcidb/kcidb.v5.3.schema.json', import.meta.url), 'utf8'),
  ) as object;
  const ajv = new Ajv({ allErrors: true, strict: true });
  addFormats(ajv);
  const validate = ajv.compile(schema);
  const doc = JSON.parse(await readFile(join(out, 'matrix-kcidb.json'), 'utf8')) as {
    builds: unknown[];
    tests: Array<{ status: string; misc: { kernel: string; matrix?: Array<{ seen_on: string[]; not_on: string[] }> } }>;
  };
  t.ok(validate(doc), ajv.errorsText(validate.errors));
  t.equal(doc.builds.length, 2);
  t.equal(doc.tests.length, 6);
  t.same(
    doc.tests
      .filter((x) => x.misc.matrix)
      .map((x) => [x.status, x.misc.kernel, x.misc.matrix![0]!.seen_on, x.misc.matrix![0]!.not_on]),
    [['FAIL', 'stock-6.12', ['stock-6.12'], ['stock']]],
  );
}
