import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { copyImage } from '../../harness/image/disk.ts';
import { statPaths } from '../../harness/image/debugfs.ts';
import { parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import { runCase } from '../../harness/run/case-runner.ts';
import { recoverWithKernel } from '../../harness/recovery/kernel.ts';
import { runOracles } from '../../harness/checks/oracle.ts';
import { noExpectations } from '../../harness/crash/expectations.ts';
import type { Finding } from '../../harness/findings/finding.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
import { stockSmall4kWithSnapshot } from '../helpers/stock-small4k.ts';

// Kernel recovery from the restored agent-ready state must mean what it
// means after a fresh boot: the kernel under test replays the journal and
// processes the orphan list of the crash image, and refuses what it refuses.
// Three crash images whose superblocks differ from the base image's (the
// page a stale cache would serve): a real crash with committed transactions
// to replay, an orphan made with debugfs, and a root inode the kernel refuses.
// Each is recovered by a booted and by a restored machine; the findings of
// the oracles must be the same.
const { kernel, initrd, base, machines, snapshot } = await stockSmall4kWithSnapshot();
const tmp = await TempDir.create('kernel-recovery-restore');
t.teardown(() => tmp.remove());

const dumpe2fs = (img: string) =>
  execFileSync('dumpe2fs', ['-h', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
const needsRecovery = (img: string) => /^Filesystem features:.*needs_recovery/m.test(dumpe2fs(img));
const lastOrphan = (img: string) => Number(/^First orphan inode:\s*(\d+)/m.exec(dumpe2fs(img))?.[1] ?? 0);
const debugfsW = (img: string, cmd: string) => execFileSync('debugfs', ['-w', '-R', cmd, img], { stdio: 'ignore' });
/** What a finding says, without the raw detail text (which quotes e2fsck's and mount's whole output). */
const said = (f: Finding) => ({
  class: f.class,
  code: f.code,
  message: f.message,
  recovery: f.recovery,
  ino: f.ino,
  path: f.path,
  title: (f as { title?: string }).title,
});

// A real crash: chattr -R +e with commit=1, killed 3 s later, when the
// migration's transactions are committed to the journal but not yet
// written in place. (Measured on the stock kernel: after 1.5 s the journal
// superblock still said empty, from 2.5 s it held the commit, and at 6 s
// the metadata had been written back in place too.)
const scenario = await parseScenario(
  'journal.yaml',
  `recipe: small-4k
recovery: [e2fsck]
steps:
  - mount: [commit=1]
  - migrate: { paths: [/shapes], recursive: true }
  - sleep: 3000
kill:
  - after: sleep
`,
);
const [spec] = expandCases([scenario], 7);
const crashDir = tmp.join('crash');
const crashed = await runCase(
  spec!,
  { machines, kernel, initrd, images: new Map([['small-4k', base]]), keep: 'all', snapshots: new Map([['small-4k', snapshot]]) },
  crashDir,
);
const journalImage = join(crashDir, 'crash.img');

// An orphan: a file unlinked while open leaves its inode on the orphan
// list (links 0, the superblock's s_last_orphan): the kernel frees it at mount.
const orphanImage = tmp.join('orphan.img');
await copyImage(base.path, orphanImage);
const victim = (await statPaths(orphanImage, ['/shapes/ind-13'])).get('/shapes/ind-13')!;
debugfsW(orphanImage, 'unlink /shapes/ind-13');
debugfsW(orphanImage, `sif <${victim.ino}> links_count 0`);
debugfsW(orphanImage, `ssv last_orphan ${victim.ino}`);

// A root directory the kernel refuses to mount ("corrupt root inode, run
// e2fsck": i_size 0) and e2fsck -n can still check, on the orphan image.
const brokenImage = tmp.join('broken-root.img');
await copyImage(orphanImage, brokenImage);
debugfsW(brokenImage, 'sif <2> size 0');

const ctx = { manifest: base.manifest, migrated: [{ path: '/shapes', recursive: true }], expectations: noExpectations };

async function recoverBothWays(name: string, image: string) {
  const out: Record<
    'booted' | 'restored',
    { recovered: Awaited<ReturnType<typeof recoverWithKernel>>; findings: Finding[]; image: string }
  > = {} as never;
  for (const how of ['booted', 'restored'] as const) {
    const work = tmp.join(`${name}-${how}.img`);
    const recovered = await recoverWithKernel(image, work, {
      machines,
      kernel,
      initrd,
      artefactPrefix: tmp.join(`${name}-${how}-`),
      ...(how === 'restored' ? { restoreFrom: snapshot } : {}),
    });
    // The oracles repair the work copy (-fy) when they find something: keep what the kernel left for the checks below.
    const left = tmp.join(`${name}-${how}-left.img`);
    await copyImage(work, left);
    const { findings } = await runOracles(recovered, ctx);
    out[how] = { recovered, findings, image: left };
  }
  return out;
}

t.test('a restored guest holds no page of its disk until it mounts, and can drop them while mounted', async (t) => {
  const disk = tmp.join('buffers.img');
  await copyImage(journalImage, disk);
  await using m = await machines.launch({
    role: 'recovery',
    kernel,
    initrd,
    disk: { path: disk, format: 'raw' },
    restoreFrom: snapshot,
  });
  const kb = async () => Number(/^Buffers:\s+(\d+) kB/m.exec((await m.agent.call('buffers')).output)?.[1] ?? NaN);
  t.equal(await kb(), 0, "Buffers: 0 kB at agent-ready (the boot's partition scan was dropped when the disk was closed)");
  t.equal((await m.agent.call('flushbufs')).exitCode, 0, 'flushbufs works');
  t.equal((await m.agent.call('mount', ['ro,noload'])).exitCode, 0);
  await m.agent.call('lsattr', ['/shapes']);
  const mounted = await kb();
  t.ok(mounted > 0, `the mount cached ${mounted} kB of the disk`);
  t.equal((await m.agent.call('umount')).exitCode, 0);
  t.equal(await kb(), 0, 'and the last close dropped them');
});

t.test('the crash image has committed transactions to replay', async (t) => {
  t.equal(crashed.status, 'pass', crashed.error ?? '');
  t.ok(needsRecovery(journalImage), 'needs_recovery is set');
  const log = execFileSync('debugfs', ['-R', 'logdump', journalImage], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  t.match(log, /Found expected sequence \d+, type 2 \(commit block\)/, 'the journal holds a commit block');
  const inPlace = await statPaths(
    journalImage,
    base.manifest.entries.filter((e) => e.type === 'file').map((e) => e.path),
  );
  t.ok(
    [...inPlace.values()].some((s) => s?.mapping === 'blocks'),
    'some migrated file is still block-mapped in place: only the replay makes it extent-mapped',
  );
});

t.test('journal replay: the restored machine replays what the booted one replays', async (t) => {
  const r = await recoverBothWays('journal', journalImage);
  t.equal(r.booted.recovered.machine?.restored, false, 'booted');
  t.equal(r.restored.recovered.machine?.restored, true, 'restored');
  t.equal(r.restored.recovered.machine?.flushed, true, 'the restored guest dropped its buffers for the disk');
  for (const how of ['booted', 'restored'] as const) {
    t.equal(r[how].recovered.mount?.exitCode, 0, `${how}: mounted`);
    t.notOk(needsRecovery(r[how].image), `${how}: the kernel replayed the journal`);
    const maps = await statPaths(
      r[how].image,
      base.manifest.entries.filter((e) => e.type === 'file').map((e) => e.path),
    );
    t.ok(
      [...maps.values()].every((s) => s?.mapping !== 'blocks'),
      `${how}: the committed migration is in place (no file block-mapped)`,
    );
  }
  t.same(r.restored.findings.map(said), r.booted.findings.map(said), 'the same findings');
  const maps = async (img: string) =>
    [
      ...(
        await statPaths(
          img,
          base.manifest.entries.map((e) => e.path),
        )
      ).entries(),
    ].map(([p, s]) => `${p} ${s?.mapping} ${s?.map}`);
  t.same(await maps(r.restored.image), await maps(r.booted.image), 'the same block maps for every file');
});

t.test('orphan cleanup: the restored machine frees the orphan the booted one frees', async (t) => {
  t.equal(lastOrphan(orphanImage), victim.ino, 'the crash image has the orphan');
  const r = await recoverBothWays('orphan', orphanImage);
  for (const how of ['booted', 'restored'] as const) {
    t.equal(r[how].recovered.mount?.exitCode, 0, `${how}: mounted`);
    t.equal(lastOrphan(r[how].image), 0, `${how}: the orphan list was processed`);
    const ino = execFileSync('debugfs', ['-R', `stat <${victim.ino}>`, r[how].image], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    t.match(ino, /Links: 0/, `${how}: inode ${victim.ino} has no links`);
    t.notMatch(ino, /dtime: 0x00000000/, `${how}: and was deleted (dtime set)`);
  }
  t.ok(
    r.booted.findings.some((f) => f.code === 'missing' && f.path === '/shapes/ind-13'),
    'the unlinked file is reported missing',
  );
  t.notOk(
    r.booted.findings.some((f) => f.source === 'e2fsck'),
    'e2fsck finds nothing after the kernel freed the orphan',
  );
  t.same(r.restored.findings.map(said), r.booted.findings.map(said), 'the same findings');
});

t.test('a corrupt root inode: both machines refuse the mount alike', async (t) => {
  const r = await recoverBothWays('broken', brokenImage);
  for (const how of ['booted', 'restored'] as const) t.not(r[how].recovered.mount?.exitCode, 0, `${how}: the mount was refused`);
  t.ok(
    r.booted.findings.some((f) => f.code === 'mount-failed'),
    'a mount-failed finding',
  );
  t.same(r.restored.findings.map(said), r.booted.findings.map(said), 'the same findings');
  t.same(r.restored.recovered.mount?.output, r.booted.recovered.mount?.output, 'mount said the same');
});
