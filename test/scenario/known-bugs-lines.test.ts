import t from 'tap';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { scenariosDir } from '../../harness/util/paths.ts';
import { loadScenario } from '../../harness/run/resolve-scenario.ts';
import { kernelLines } from '../../harness/kernel/lines.ts';
import { knownBugNotes } from '../../harness/report/text.ts';
import { parseScenarioText } from '../../harness/scenario/parse.ts';

// Every known bug states the kernel lines it was confirmed on, each a line qcrash knows.
const dir = join(scenariosDir, 'known-bugs');
const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml'));

t.test('every known-bugs entry has confirmed-on with known lines', async (t) => {
  t.ok(files.length >= 7);
  for (const f of files) {
    const s = await loadScenario(join(dir, f), { suite: 'known-bugs' });
    t.ok(s.confirmedOn?.length, `${f} states confirmed-on`);
    for (const l of s.confirmedOn ?? [])
      t.ok(
        kernelLines.some((k) => k.name === l),
        `${f}: ${l} is a known line`,
      );
  }
});

t.test('confirmed-on takes only line names, with file:line errors', async (t) => {
  t.throws(
    () => parseScenarioText('x.yaml', 'confirmed-on: [six]\nrecipe: small-4k\nsteps: [mount]\n'),
    /x\.yaml:1.*kernel line such as 6\.1/,
  );
});

t.test('a run shows each known bug with its lines, and says when its own line is not among them', async (t) => {
  const scenarios = [{ name: 'kb', file: 'kb.yaml', hash: '', suite: 'known-bugs', confirmedOn: ['6.1'] }];
  t.same(knownBugNotes({ scenarios, kernel: { id: 'k', release: 'r', kind: 'stock', line: '6.1' } }), [
    'kb: confirmed on 6.1 (this run: 6.1)',
  ]);
  t.same(knownBugNotes({ scenarios, kernel: { id: 'k', release: 'r', kind: 'stock', line: '6.12' } }), [
    'kb: confirmed on 6.1 (this run: 6.12, NOT confirmed on this line yet)',
  ]);
});
