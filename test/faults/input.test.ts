import t, { type Test } from 'tap';
import { mkdtemp, rm, writeFile, mkdir, copyFile, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scenariosDir } from '../../harness/util/paths.ts';
import { maxScenarioBytes } from '../../harness/scenario/parse.ts';
import { qcrash } from '../helpers/cli.ts';
import { qemuPids } from '../helpers/env.ts';

// Bad input, caught before anything is built or booted: each is exit 2 with
// a message that says what to do, and leaves no QEMU, temp dir or results
// folder behind.
const dir = await mkdtemp(join(tmpdir(), 'faults-input-'));
const tmp = join(dir, 'tmp');
await mkdir(tmp);
t.teardown(() => rm(dir, { recursive: true, force: true }));
const env = { QCRASH_TMPDIR: tmp };
const run = (...args: string[]) => qcrash(['run', ...args], { env });

async function scenario(name: string, text: string): Promise<string> {
  const f = join(dir, name);
  await writeFile(f, text);
  return f;
}
const ok = 'recipe: small-4k\nrecovery: [e2fsck]\nsteps:\n  - mount\n  - sync\nkill:\n  - after: sync\n';

/** Nothing left behind: no temp dir of ours, no QEMU, no half-made results folder. */
async function clean(t: Test, out?: string) {
  t.same(
    (await readdir(tmp)).filter((f) => f.startsWith('qcrash-')),
    [],
    'no temp dir left',
  );
  t.same(qemuPids(tmp), [], 'no QEMU left');
  if (out)
    t.notOk(
      await stat(join(out, 'run.json')).then(
        () => true,
        () => false,
      ),
      'no run folder started',
    );
}

t.test('a filter that matches nothing is exit 2, not a green run of zero cases', async (t) => {
  const out = join(dir, 'nomatch');
  const r = await run(await scenario('nomatch.yaml', ok), '--filter', 'NOMATCH', '--out', out);
  t.equal(r.code, 2);
  t.match(r.stderr, /nothing to run: --filter NOMATCH matched none of the 1 case\(s\) of nomatch/);
  t.notMatch(r.stdout, /Result: PASS/);
  await clean(t, out);
});

t.test('a migrate path that is not in the recipe, or leaves /mnt, is exit 2 at its line', async (t) => {
  const missing = await run(await scenario('path.yaml', ok.replace('  - sync\n', '  - migrate: /shapes/nope\n  - sync\n')));
  t.equal(missing.code, 2);
  t.match(missing.stderr, /path\.yaml:5: migrate: "\/shapes\/nope" is not in the recipe's filesystem/);
  const escape = await run(await scenario('escape.yaml', ok.replace('  - sync\n', '  - migrate: /../../etc/passwd\n  - sync\n')));
  t.equal(escape.code, 2);
  t.match(escape.stderr, /escape\.yaml:5: .*must not contain "\." or "\.\." parts/);
  await clean(t);
});

t.test('two scenarios with one id are exit 2 before anything runs; the shipped suites do not collide', async (t) => {
  const a = join(dir, 'a', 'durability.yaml');
  const b = join(dir, 'b', 'durability.yaml');
  await mkdir(join(dir, 'a'));
  await mkdir(join(dir, 'b'));
  await writeFile(a, ok);
  await writeFile(b, ok);
  const r = await run(a, b);
  t.equal(r.code, 2);
  t.match(
    r.stderr,
    /two scenarios have the id "durability": .*a\/durability\.yaml and .*b\/durability\.yaml; give one of them a distinct `name:`/,
  );
  // The shipped suites now have ids from their paths: durability and validate/durability. A filter that
  // matches nothing still proves both parsed and expanded without colliding.
  const shipped = await run(
    join(scenariosDir, 'durability.yaml'),
    join(scenariosDir, 'validate', 'durability.yaml'),
    '--filter',
    'NOMATCH',
  );
  t.equal(shipped.code, 2);
  t.match(shipped.stderr, /matched none of the \d+ case\(s\) of durability, validate\/durability/);
  await clean(t);
});

t.test('--out on /proc, on a file, or unwritable is exit 2 before anything is prepared', async (t) => {
  const proc = await run(await scenario('out.yaml', ok), '--out', '/proc/qcrash-results');
  t.equal(proc.code, 2);
  t.match(proc.stderr, /--out \/proc\/qcrash-results is on proc, not a real filesystem/);
  const sys = await run(join(dir, 'out.yaml'), '--out', '/sys/kernel/qcrash');
  t.equal(sys.code, 2);
  t.match(sys.stderr, /is on sysfs/);
  const file = join(dir, 'a-file');
  await writeFile(file, 'x');
  const onFile = await run(join(dir, 'out.yaml'), '--out', file);
  t.equal(onFile.code, 2);
  t.match(onFile.stderr, /--out .*a-file is a file, not a folder/);
  const under = await run(join(dir, 'out.yaml'), '--out', join(file, 'sub'));
  t.equal(under.code, 2);
  t.match(under.stderr, /cannot be written \(ENOTDIR\)/);
  t.notMatch(proc.stderr + onFile.stderr + under.stderr, /internal error|\n\s+at /, 'no stack trace');
  await clean(t);
});

t.test('a scenario file over the size limit is refused at once', async (t) => {
  const f = join(dir, 'huge.yaml');
  await writeFile(f, ok + `# ${'x'.repeat(maxScenarioBytes)}\n`);
  const r = await run(f);
  t.equal(r.code, 2);
  t.match(r.stderr, /huge\.yaml: scenario file is 1\.0 MiB; the limit is 1 MiB/);
});

t.test('a sleep longer than the step timeout is exit 2 at its line', async (t) => {
  const r = await run(await scenario('sleep.yaml', ok.replace('  - sync\n', '  - sleep: 500000\n  - sync\n')));
  t.equal(r.code, 2);
  t.match(r.stderr, /sleep\.yaml:5: a sleep of 500000 ms would outlast the step timeout/);
});

t.test("--kernel naming a file that is not a bzImage is exit 2 in our words, not QEMU's", async (t) => {
  const notKernel = join(dir, 'bzImage');
  await writeFile(notKernel, 'this is not a kernel\n'.repeat(100));
  const r = await run(join(dir, 'out.yaml'), '--kernel', notKernel);
  t.equal(r.code, 2);
  t.match(r.stderr, /--kernel .*bzImage is not a bzImage \(no "HdrS" x86 boot header/);
  await clean(t);
});

t.test('--jobs beyond what the machine holds is exit 2', async (t) => {
  const r = await run(join(dir, 'out.yaml'), '--jobs', '99999');
  t.equal(r.code, 2);
  t.match(r.stderr, /--jobs 99999: this machine holds at most \d+ VMs at once/);
});

t.test("check on what is not a crash image: exit 2 naming the user's file", async (t) => {
  const text = join(dir, 'notes.txt');
  await writeFile(text, 'hello\n'.repeat(1000));
  const notImage = await qcrash(['check', text], { env });
  t.equal(notImage.code, 2);
  t.match(notImage.stderr, /notes\.txt is not an ext2\/3\/4 image/);
  const missing = await qcrash(['check', join(dir, 'no-such.img')], { env });
  t.equal(missing.code, 2);
  t.match(missing.stderr, /no-such\.img: no such file/);
  const folder = await qcrash(['check', dir], { env });
  t.equal(folder.code, 2);
  t.match(folder.stderr, /is a directory: qcrash check takes an image file/);
  const ext2 = join(dir, 'ext2.img');
  const { execFileSync } = await import('node:child_process');
  execFileSync('mkfs.ext2', ['-F', '-q', ext2, '8M']);
  const noJournal = await qcrash(['check', ext2], { env });
  t.equal(noJournal.code, 2);
  t.match(noJournal.stderr, /ext2\.img has no journal \(an ext2 filesystem\?\)/);
  // An ext4 image whose superblock is damaged (an impossible block size): e2fsck cannot open it.
  const broken = join(dir, 'broken.img');
  execFileSync('mkfs.ext4', ['-F', '-q', '-b', '4096', broken, '8M']);
  const { open } = await import('node:fs/promises');
  const fh = await open(broken, 'r+');
  await fh.write(Buffer.from([20, 0, 0, 0]), 0, 4, 1024 + 24);
  await fh.close();
  const bad = await qcrash(['check', broken], { env });
  t.equal(bad.code, 3, 'an image e2fsck cannot check is an infrastructure error');
  t.match(bad.stderr, /broken\.img/, "the message names the user's file");
  t.notMatch(bad.stderr, /qcrash-check-/, 'not the temporary copy');
  t.notMatch(notImage.stderr + missing.stderr + folder.stderr, /\n\s+at /, 'no stack trace');
  await clean(t);
});

t.test('a copy of the shipped durability suite under another name runs beside it', async (t) => {
  // Same file name as scenarios/durability.yaml, different folder: a distinct name: makes them coexist.
  const copy = join(dir, 'mine');
  await mkdir(copy);
  await copyFile(join(scenariosDir, 'durability.yaml'), join(copy, 'durability.yaml'));
  await writeFile(
    join(copy, 'durability.yaml'),
    `name: my-durability\n${await (await import('node:fs/promises')).readFile(join(copy, 'durability.yaml'), 'utf8')}`,
  );
  const r = await run(join(scenariosDir, 'durability.yaml'), join(copy, 'durability.yaml'), '--filter', 'NOMATCH');
  t.match(r.stderr, /of durability, my-durability/);
});
