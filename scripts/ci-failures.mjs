#!/usr/bin/env node
// Reads the TAP that `npm test` printed (a file) and prints, at the end of a
// CI log, every failing assertion with the subtests around it and tap's
// diagnostics (the YAML block under it). A CI log is often read from its
// tail only: a failure 5000 lines up, in a 20-minute run, is otherwise
// easy to miss and costs a whole second run to find. Prints nothing when
// nothing failed. Usage: node scripts/ci-failures.mjs TAP_FILE
import { fs } from 'zx';

const file = process.argv[2];
if (!file) {
  console.error('usage: node scripts/ci-failures.mjs TAP_FILE');
  process.exit(2);
}
const lines = (await fs.readFile(file, 'utf8')).split('\n');
const indentOf = (line) => line.length - line.trimStart().length;
/**
 * The subtests open at the current line: tap prints "# Subtest: NAME", the
 * subtest's own lines 4 columns deeper, then its summary ("ok N - NAME" or
 * "not ok N - NAME") at the comment's column.
 */
const stack = [];
const out = [];
for (let i = 0; i < lines.length; i++) {
  const line = lines[i];
  const indent = indentOf(line);
  const subtest = /^\s*# Subtest: (.*)$/.exec(line);
  if (subtest) {
    stack.push({ indent, name: subtest[1], failed: false });
    continue;
  }
  const result = /^\s*(not ok|ok) \d+/.exec(line);
  if (!result) continue;
  // A summary line closes its subtest; a parent that failed because a child did is not repeated.
  const closed = stack.at(-1)?.indent === indent ? stack.pop() : undefined;
  if (result[1] === 'ok' || /# (TODO|SKIP)/i.test(line)) continue;
  for (const s of stack) s.failed = true;
  if (closed?.failed) continue;
  const where = [...stack.map((s) => s.name), ...(closed ? [closed.name] : [])].join(' > ');
  const block = [...(where ? [where] : []), `  ${line.trim()}`];
  if (lines[i + 1]?.trim() === '---') {
    for (let j = i + 2; j < lines.length && j < i + 60; j++) {
      if (lines[j].trim() === '...') break;
      block.push(`    ${lines[j].slice(indent + 2)}`);
    }
  }
  out.push(block.join('\n'));
}
if (out.length) {
  console.log(`\n# ${out.length} failing assertion(s), repeated here from the log above:\n`);
  console.log(out.join('\n\n'));
}
