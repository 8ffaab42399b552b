#!/usr/bin/env node
// Reads the TAP that `npm test` printed (a file) and prints, at the end of a
// CI log, every failing assertion with the subtests around it and tap's
// diagnostics (the YAML block under it). A CI log is often read from its
// tail only: a failure 5000 lines up, in a 20-minute run, is otherwise
// easy to miss and costs a whole second run to find. Prints nothing when
// nothing failed. Usage: node scripts/ci-failures.mjs TAP_FILE
import { fs } from 'zx';
import { Parser } from 'tap-parser';
import { stringify } from 'yaml';

const file = process.argv[2];
if (!file) {
  console.error('usage: node scripts/ci-failures.mjs TAP_FILE');
  process.exit(2);
}
const out = [];
/** Subtests (by full name) a failure was already reported inside: their own failing summary line is not repeated. */
const failedWithin = new Set();
/** tap-parser reads every subtest with a child parser of its own: every level is watched. */
const watch = (parser) => {
  parser.on('child', watch);
  parser.on('assert', (r) => {
    if (r.ok || r.todo || r.skip || failedWithin.has(r.fullname)) return;
    const path = r.fullname.split(' > ');
    for (let i = 1; i < path.length; i++) failedWithin.add(path.slice(0, i).join(' > '));
    const where = path.slice(0, -1).join(' > ');
    // At most 58 lines of diagnostics each: a long diff or source excerpt stays in the log above.
    const diag = r.diag ? stringify(r.diag).trimEnd().split('\n').slice(0, 58) : [];
    out.push([...(where ? [where] : []), `  not ok ${r.id} - ${r.name}`, ...diag.map((l) => `    ${l}`)].join('\n'));
  });
};
const parser = new Parser();
watch(parser);
parser.end(await fs.readFile(file, 'utf8'));
if (out.length) {
  console.log(`\n# ${out.length} failing assertion(s), repeated here from the log above:\n`);
  console.log(out.join('\n\n'));
}
