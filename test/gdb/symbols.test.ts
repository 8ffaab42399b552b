import t from 'tap';
import { join } from 'node:path';
import { SymbolTable, cloneBase } from '../../harness/vm/gdb/symbols.ts';
import { ConfigError } from '../../harness/util/errors.ts';
import { projectRoot } from '../../harness/util/paths.ts';

const fixture = (name: string) => SymbolTable.load(join(projectRoot, 'test/fixtures/symbols', name));

t.test('clone names: constprop, isra, part, cold and chains of them', async (t) => {
  t.equal(cloneBase('free_dind_blocks.constprop.0'), 'free_dind_blocks');
  t.equal(cloneBase('ext4_ext_migrate.isra.12'), 'ext4_ext_migrate');
  t.equal(cloneBase('finish_range.part.3'), 'finish_range');
  t.equal(cloneBase('free_dind_blocks.cold'), 'free_dind_blocks');
  t.equal(cloneBase('f.constprop.0.isra.1'), 'f');
  t.equal(cloneBase('free_dind_blocks'), undefined, 'a plain name is no clone');
});

t.test('a function with its own symbol resolves to it, with no clone', async (t) => {
  const s = await fixture('plain.map');
  const r = s.lookup('free_dind_blocks');
  t.equal(r.name, 'free_dind_blocks');
  t.equal(r.clone, undefined);
});

t.test('a function the compiler only left as a clone resolves to the hot clone, and says so', async (t) => {
  const s = await fixture('clone-only.map');
  const r = s.lookup('free_dind_blocks');
  t.equal(r.clone, 'free_dind_blocks.constprop.0', 'the constprop clone, not the .cold part');
  t.equal(r.addr, s.resolve('free_dind_blocks.constprop.0'));
  t.equal(s.symbolize(r.addr), 'free_dind_blocks.constprop.0');
});

t.test('a missing function is a ConfigError with close matches', async (t) => {
  const s = await fixture('missing.map');
  const e = t.throws(() => s.lookup('free_dind_blocks', { file: 'x.yaml', line: 3 })) as unknown as ConfigError;
  t.ok(e instanceof ConfigError);
  t.match(e.message, /^x\.yaml:3: unknown kernel symbol "free_dind_blocks".*Close matches: .*free_dind_blocks_rcu/);
  t.ok(s.closeMatches('free_dind_blocks').includes('free_ind_block'));
});

t.test('two hot clones are ambiguous: named, never a guess', async (t) => {
  const s = SymbolTable.parse(
    ['ffffffff81000000 t f.constprop.0', 'ffffffff81000100 t f.constprop.1', 'ffffffff81000200 t f.cold'].join('\n'),
  );
  t.throws(() => s.lookup('f'), /has 2 compiler clones \(f\.constprop\.0, f\.constprop\.1\)/);
});
