#!/usr/bin/env node
// Puts `# yaml-language-server: $schema=<relative path>` on the first line of
// every shipped scenario and recipe file, so editors check them as they are
// typed. Safe to run again: a file that names its schema already is rewritten
// only if the path is wrong. Run after adding a scenario or recipe.
import { fs, glob, path } from 'zx';

const root = path.resolve(import.meta.dirname, '..');
const kinds = [
  { schema: 'schemas/scenario.schema.json', files: ['scenarios/**/*.yaml'] },
  { schema: 'schemas/recipe.schema.json', files: ['vm-images/recipes/*.yaml', 'vm-images/bench/*.yaml'] },
];
const marker = '# yaml-language-server: $schema=';
for (const { schema, files } of kinds) {
  for (const rel of await glob(files, { cwd: root })) {
    const file = path.join(root, rel);
    const header = `${marker}${path.relative(path.dirname(file), path.join(root, schema))}`;
    const text = await fs.readFile(file, 'utf8');
    const body = text.startsWith(marker) ? text.slice(text.indexOf('\n') + 1) : text;
    const next = `${header}\n${body}`;
    if (next !== text) {
      await fs.writeFile(file, next);
      console.log(`${rel}: ${header}`);
    }
  }
}
