import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import {
  kcidbDocument,
  kcidbStatus,
  kcidbTestPath,
  kcidbVersion,
  patchsetHash,
  type KcidbDocument,
} from '../../harness/report/kcidb.ts';
import { sha256 } from '../../harness/util/hash.ts';
import type { RunSummary } from '../../harness/results/run.ts';

// ajv-formats is CommonJS: under ESM its function is the default export's default.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (a: Ajv) => Ajv;

const schemaPath = new URL('../../schemas/kcidb/kcidb.v5.3.schema.json', import.meta.url);
const schema = JSON.parse(await readFile(schemaPath, 'utf8')) as Record<string, any>;
// kcidb-io validates with draft-07 and format checking: ajv's default draft is 07.
const ajv = new Ajv({ allErrors: true, strict: true });
addFormats(ajv);
const validate = ajv.compile(schema);

// A real run (stock kernel, scenarios/durability.yaml, e2fsck recovery, 4 cases), and the
// trimmed real run of the default suite the reporter tests use (a fail and an error).
const stockRun = JSON.parse(
  await readFile(new URL('../fixtures/engines/summary-durability.json', import.meta.url), 'utf8'),
) as RunSummary;
const mixedRun = JSON.parse(await readFile(new URL('../fixtures/report/summary.json', import.meta.url), 'utf8')) as RunSummary;

/** What a consumer reads: the JSON text, not the in-memory object. */
function asWritten(doc: KcidbDocument): any {
  return JSON.parse(JSON.stringify(doc));
}

function errorsOf(doc: unknown): string {
  validate(doc);
  return ajv.errorsText(validate.errors);
}

const dir = await mkdtemp(join(tmpdir(), 'kcidb-test-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

// A kernel built from a git tree with two patches, as harness/kernel/build.ts records it.
const patchTexts = [
  'From: A <a@b>\nSubject: [PATCH 1/2] ext4: mark the inode dirty after the swap\n\n--- a/x\n+++ b/x\n',
  'Subject: [PATCH 2/2] ext4: keep EXT4_STATE_EXT_MIGRATE until the end\n\n--- a/y\n+++ b/y\n',
];
const patchFiles = [join(dir, '0001-a.patch'), join(dir, '0002-b.patch')];
await Promise.all(patchFiles.map((f, i) => writeFile(f, patchTexts[i]!)));
const base = '0123456789abcdef0123456789abcdef01234567';
function builtRun(source: string): RunSummary {
  return {
    ...mixedRun,
    kernel: {
      id: 'build-5c0ffee5c0ffee00',
      release: '6.1.158',
      kind: 'built',
      provenance: {
        source,
        base,
        patches: patchTexts.map((text, i) => ({
          file: patchFiles[i],
          subject: /^Subject:\s*(.+)$/m.exec(text)![1],
          sha256: sha256(text),
        })),
        configs: ['/work/qcrash/kernels/configs/minimal.config'],
        configHash: 'a1b2c3d4e5f60718',
      },
    },
  };
}

t.test('the schema is the KCIDB version the writer claims', async (t) => {
  t.equal(schema.properties.version.properties.major.const, kcidbVersion.major);
  t.equal(schema.properties.version.properties.minor.maximum, kcidbVersion.minor);
  t.same(schema.$defs.status.enum, ['FAIL', 'ERROR', 'MISS', 'PASS', 'DONE', 'SKIP']);
});

t.test('a real stock-kernel run is valid KCIDB with one checkout, one build and a test per case', async (t) => {
  const doc = asWritten(kcidbDocument(stockRun));
  t.ok(validate(doc), errorsOf(doc));
  t.equal(doc.checkouts.length, 1);
  t.equal(doc.builds.length, 1);
  t.equal(doc.tests.length, stockRun.cases.length);
  t.equal(doc.checkouts[0].id, 'qcrash:debian/linux-image-cloud-amd64=6.1.0-57-cloud-amd64');
  t.equal(doc.builds[0].id, `qcrash:${stockRun.kernel.id}`);
  t.equal(doc.builds[0].checkout_id, doc.checkouts[0].id);
  for (const test of doc.tests) {
    t.equal(test.origin, 'qcrash');
    t.equal(test.build_id, doc.builds[0].id);
    t.match(test.id, new RegExp(`^qcrash:${stockRun.runId}/durability/`));
    t.match(test.path, /^ext4\.migrate\.durability\.[A-Za-z0-9_-]+$/);
    t.equal(test.status, 'PASS');
  }
  t.same(doc.tests.map((x: any) => x.path).sort(), [
    'ext4.migrate.durability.after-fsync',
    'ext4.migrate.durability.after-fsync-written',
    'ext4.migrate.durability.after-sync',
    'ext4.migrate.durability.no-kill',
  ]);
  t.notOk('git_commit_hash' in doc.checkouts[0], 'a Debian package has no commit to name');
});

t.test('fail and error cases map to FAIL and ERROR with what went wrong in the excerpt', async (t) => {
  const doc = asWritten(kcidbDocument(mixedRun));
  t.ok(validate(doc), errorsOf(doc));
  const byCase = new Map(doc.tests.map((x: any) => [x.misc.case_id, x]));
  const failed = byCase.get('commit-sweep/commit-migrate-1/r1') as any;
  t.equal(failed.status, 'FAIL');
  t.equal(
    failed.log_excerpt.split('\n')[0].split(' ').slice(0, 2).join(' '),
    `${mixedRun.cases[1]!.failing[0]!.class} ${mixedRun.cases[1]!.failing[0]!.code}`,
  );
  const errored = byCase.get('shapes-4k/after-sync/r1') as any;
  t.equal(errored.status, 'ERROR');
  t.match(errored.log_excerpt, /VM did not start/);
  t.same(
    doc.tests.reduce((m: Record<string, number>, x: any) => ({ ...m, [x.status]: (m[x.status] ?? 0) + 1 }), {}),
    { PASS: mixedRun.counts.pass, FAIL: mixedRun.counts.fail, ERROR: mixedRun.counts.error },
  );
});

t.test('a crash point that never fired is never a PASS', async (t) => {
  t.equal(kcidbStatus('not-reached'), 'MISS');
  t.equal(kcidbStatus('skipped-by-a-newer-qcrash'), 'MISS', 'an unknown status is not a pass either');
  const run: RunSummary = {
    ...stockRun,
    cases: stockRun.cases.map((c, i) => (i === 0 ? { ...c, status: 'not-reached', error: 'commit point 3 never fired' } : c)),
  };
  const doc = asWritten(kcidbDocument(run));
  t.ok(validate(doc), errorsOf(doc));
  t.equal(doc.tests[0].status, 'MISS');
  t.match(doc.tests[0].log_excerpt, /never fired/);
});

t.test('a built kernel carries its base commit and patch identity', async (t) => {
  const doc = asWritten(kcidbDocument(builtRun(`/src/linux@${base.slice(0, 12)}`)));
  t.ok(validate(doc), errorsOf(doc));
  const co = doc.checkouts[0];
  // KCIDB's own recipe: sha256sum *.patch | cut -c-64 | sha256sum | cut -c-64
  const perPatch = execFileSync('sha256sum', patchFiles, { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((l) => `${l.slice(0, 64)}\n`)
    .join('');
  const expected = execFileSync('sha256sum', { input: perPatch, encoding: 'utf8' }).slice(0, 64);
  t.equal(co.patchset_hash, expected, 'patchset_hash is what sha256sum computes from the patch files');
  t.equal(co.patchset_hash, patchsetHash(patchTexts.map((x) => sha256(x))));
  t.equal(co.git_commit_hash, base);
  t.equal(co.id, `qcrash:${base}+${expected}`);
  t.match(co.comment, /mark the inode dirty after the swap; .*EXT4_STATE_EXT_MIGRATE/);
  t.same(
    co.misc.patches.map((p: any) => p.file),
    ['0001-a.patch', '0002-b.patch'],
  );
  t.equal(doc.builds[0].id, 'qcrash:build-5c0ffee5c0ffee00');
  t.equal(doc.builds[0].config_name, 'minimal.config');
  t.equal(doc.builds[0].misc.config_hash, 'a1b2c3d4e5f60718');

  const tar = asWritten(kcidbDocument(builtRun('/usr/src/linux-source-6.1.tar.xz')));
  t.ok(validate(tar), errorsOf(tar));
  t.notOk('git_commit_hash' in tar.checkouts[0], "the commit qcrash made of Debian's tarball is not a commit anyone else has");
  t.equal(tar.checkouts[0].id, `qcrash:linux-source-6.1.tar.xz@${base.slice(0, 12)}+${expected}`);
  const unpatched = asWritten(
    kcidbDocument({
      ...builtRun('/usr/src/linux-source-6.1.tar.xz'),
      kernel: { ...builtRun('x').kernel, provenance: { ...builtRun('x').kernel.provenance, patches: [] } },
    }),
  );
  t.ok(validate(unpatched), errorsOf(unpatched));
  t.equal(unpatched.checkouts[0].patchset_hash, '', 'no patches: the empty patchset hash');
});

t.test('test paths stay inside KCIDB path syntax whatever the point label holds', async (t) => {
  t.equal(
    kcidbTestPath({ scenario: 'shapes-4k', pointLabel: 'kernel-migrate-ext4_ext_migrate+0x1c-hit2' }),
    'ext4.migrate.shapes-4k.kernel-migrate-ext4_ext_migrate_0x1c-hit2',
  );
  t.equal(kcidbTestPath({ scenario: 'v1.2', pointLabel: '' }), 'ext4.migrate.v1_2._');
  const run: RunSummary = {
    ...stockRun,
    cases: [{ ...stockRun.cases[0]!, pointLabel: 'kernel-migrate-ext4_ext_migrate+0x1c-hit2' }],
  };
  const doc = asWritten(kcidbDocument(run));
  t.ok(validate(doc), errorsOf(doc));
});

t.test('the schema rejects broken documents (the check can fail)', async (t) => {
  const good = asWritten(kcidbDocument(mixedRun));
  t.ok(validate(good), errorsOf(good));
  const broken: Array<[string, (d: any) => void, RegExp]> = [
    ['no version', (d) => delete d.version, /must have required property 'version'/],
    ['a test without build_id', (d) => delete d.tests[0].build_id, /must have required property 'build_id'/],
    ['a build without checkout_id', (d) => delete d.builds[0].checkout_id, /must have required property 'checkout_id'/],
    ['a bad status', (d) => (d.tests[0].status = 'OK'), /must be equal to one of the allowed values/],
    ['a not-reached status passed through', (d) => (d.tests[0].status = 'not-reached'), /allowed values/],
    ['an id without origin', (d) => (d.tests[0].id = 'no-origin-here'), /must match pattern/],
    ['an unsanitised path', (d) => (d.tests[0].path = 'ext4.migrate.shapes.kernel+0x1c'), /must match pattern/],
    ['an unknown field', (d) => (d.tests[0].verdict = 'pass'), /must NOT have additional properties/],
    ['a newer minor version', (d) => (d.version.minor = kcidbVersion.minor + 1), /must be <= 3/],
    ['a non-numeric duration', (d) => (d.tests[0].duration = '8.6s'), /must be number/],
  ];
  for (const [what, breakIt, message] of broken) {
    const doc = structuredClone(good);
    breakIt(doc);
    t.notOk(validate(doc), `${what}: rejected`);
    t.match(ajv.errorsText(validate.errors), message, `${what}: ${ajv.errorsText(validate.errors).slice(0, 120)}`);
  }
});

// kcidb-io itself validates with python-jsonschema (draft-07, format checking): where that
// library is installed, check the same documents with it too, an independent implementation.
const probe = spawnSync('python3', ['-c', 'import jsonschema'], { encoding: 'utf8' });
const noPythonJsonschema =
  probe.error || probe.status !== 0
    ? `python3 with jsonschema is not installed (${probe.error ? probe.error.message : probe.stderr.trim().split('\n').at(-1)}); ajv's verdict above stands alone`
    : false;
t.test('python-jsonschema agrees, where it is installed', { skip: noPythonJsonschema }, async (t) => {
  const check = `
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
v = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
for path in sys.argv[2:]:
    errors = sorted(e.message for e in v.iter_errors(json.load(open(path))))
    print(json.dumps(errors))
`;
  const good = join(dir, 'good.json');
  const bad = join(dir, 'bad.json');
  await writeFile(good, JSON.stringify(kcidbDocument(builtRun(`/src/linux@${base.slice(0, 12)}`))));
  const broken = asWritten(kcidbDocument(mixedRun));
  broken.tests[0].status = 'not-reached';
  await writeFile(bad, JSON.stringify(broken));
  const out = execFileSync('python3', ['-c', check, schemaPath.pathname, good, bad], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as string[]);
  t.same(out[0], [], 'the built-kernel document is valid');
  t.equal(out[1]!.length, 1);
  t.match(out[1]![0], /'not-reached' is not one of/);
});
