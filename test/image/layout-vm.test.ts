import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../harness/util/paths.ts';
import { qcrashBin } from '../helpers/env.ts';

// One short VM run on the stock kernel: files with exact layouts (a run
// longer than a block group, a 5-extent file, two interleaved files) are
// migrated without a crash; the content and mapping oracles must find every
// byte and every block where it was.
const out = await mkdtemp(join(tmpdir(), 'layout-vm-'));
t.teardown(() => rm(out, { recursive: true, force: true }));
const scenario = join(projectRoot, 'test', 'fixtures', 'image', 'layouts', 'vm-layouts-scenario.yaml');

t.test('migrating exact layouts moves no byte and no block', async (t) => {
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [qcrashBin, 'run', scenario, '--out', out, '--format', 'json', '--keep', 'none'],
      { maxBuffer: 64 << 20 },
      (e, stdout, stderr) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr }),
    );
  });

  t.equal(r.code, 0, 'qcrash run exits 0', { stderr: r.stderr.slice(-2000) });
  const caseDir = join(out, 'cases', 'vm-layouts-scenario', 'no-kill', 'r1');
  const c = JSON.parse(await readFile(join(caseDir, 'case.json'), 'utf8')) as {
    status: string;
    findings: Array<{ class: string; code: string }>;
  };
  t.equal(c.status, 'pass');
  t.same(
    c.findings.filter((f) => f.class !== 'leak'),
    [],
    'no data, corruption or kernel finding',
  );
  const exp = JSON.parse(await readFile(join(caseDir, 'expectations.json'), 'utf8')) as { mustBeExtents: string[] };
  t.same(
    [...exp.mustBeExtents].sort(),
    ['/v', '/v/a', '/v/b', '/v/e5', '/v/run-9000'],
    'umount made every migration durable (the folder too): the oracles checked them extent-mapped',
  );
});
