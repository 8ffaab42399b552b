import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../../harness/util/paths.ts';
import { debianPackages } from '../../harness/doctor/doctor.ts';
import { hostTools } from '../../harness/util/tools.ts';

// .ci/install (what a fresh machine and CI install) and `qcrash doctor
// --install` must install the same Debian packages, and every host program
// the harness runs must come from one of them.
const install = await readFile(join(projectRoot, '.ci', 'install'), 'utf8');
const list = /^packages=\(([^)]*)\)/m.exec(install);

t.test('.ci/install and doctor list the same Debian packages', async (t) => {
  t.ok(list, '.ci/install has a packages=(...) list');
  const fromInstall = list![1]!.split(/\s+/).filter(Boolean).sort();
  t.same(fromInstall, [...debianPackages].sort());
});

t.test('every host tool names a package of that list', async (t) => {
  const missing = Object.entries(hostTools).filter(([, pkg]) => !debianPackages.includes(pkg));
  t.same(missing, [], 'tools whose package is not installed by .ci/install');
});
