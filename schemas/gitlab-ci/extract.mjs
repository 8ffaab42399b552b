#!/usr/bin/env node
// Extracts GitLab's CI JSON schema (gitlab-org/gitlab's
// app/assets/javascripts/editor/schema/ci.json) from the copy the npm package
// gitlab-ci-local bundles into dist/index.js, where it is inlined as an object
// literal; gitlab-ci-local relaxes a few patterns only afterwards, in code,
// so the literal is GitLab's file as gitlab-ci-local fetched it.
//
//   cd /tmp && npm pack gitlab-ci-local@4.75.1 && tar -xzf gitlab-ci-local-4.75.1.tgz
//   node schemas/gitlab-ci/extract.mjs /tmp/package/dist/index.js schemas/gitlab-ci/ci.json
import { readFileSync, writeFileSync } from 'node:fs';
import { runInNewContext } from 'node:vm';

const [bundle, out] = process.argv.slice(2);
if (!bundle || !out) {
  console.error('usage: extract.mjs PATH/TO/gitlab-ci-local/dist/index.js OUT.json');
  process.exit(2);
}
const js = readFileSync(bundle, 'utf8');
const marker = '{$schema:"http://json-schema.org/draft-07/schema#",$id:"https://gitlab.com/.gitlab-ci.yml"';
const start = js.indexOf(marker);
if (start < 0 || js.indexOf(marker, start + 1) >= 0) {
  console.error(`${bundle}: expected exactly one inlined GitLab CI schema (${start < 0 ? 'none' : 'several'} found)`);
  process.exit(1);
}
// Find the literal's closing brace, stepping over strings (which may hold braces).
let depth = 0;
let end = -1;
for (let i = start; i < js.length && end < 0; i++) {
  const ch = js[i];
  if (ch === '"' || ch === "'" || ch === '`') {
    for (i++; js[i] !== ch; i++) if (js[i] === '\\') i++;
  } else if (ch === '{' || ch === '[') depth++;
  else if (ch === '}' || ch === ']') {
    depth--;
    if (depth === 0) end = i + 1;
  }
}
if (end < 0) {
  console.error(`${bundle}: the schema literal does not end`);
  process.exit(1);
}
// The literal is data (minified: unquoted keys, !0 for true): evaluate it with no globals at all.
const schema = runInNewContext(`(${js.slice(start, end)})`, Object.create(null), { timeout: 5000 });
writeFileSync(out, JSON.stringify(schema, null, 2) + '\n');
console.log(`wrote ${out}: ${Object.keys(schema.definitions ?? {}).length} definitions`);
