#!/usr/bin/env node
// Writes docs/reference/ and schemas/*.schema.json from the code
// (harness/cli/reference.ts): the command definitions and the parser's schemas.
import { register } from 'tsx/esm/api';
import { fs, path } from 'zx';

register();
const { referenceFiles } = await import('../harness/cli/reference.ts');
const root = path.resolve(import.meta.dirname, '..');
for (const [file, text] of referenceFiles()) {
  await fs.outputFile(path.join(root, file), text);
  console.log(`wrote ${file}`);
}
