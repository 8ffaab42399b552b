import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDumpe2fs, describeBlock, backupGroups } from '../../harness/image/geometry.ts';
import { planLayouts, type LayoutFile } from '../../harness/image/layout.ts';
import { parseRecipe } from '../../harness/image/recipe.ts';
import { parseBlockMap, diffDataMaps } from '../../harness/image/block-map.ts';
import { ConfigError } from '../../harness/util/errors.ts';
import { projectRoot } from '../../harness/util/paths.ts';

// The planner and the parsers, without building an image: the geometry is
// dumpe2fs output captured from a real mkfs (see the fixture's first line).
const fixtures = join(projectRoot, 'test', 'fixtures', 'image');
const geo = parseDumpe2fs(await readFile(join(fixtures, 'dumpe2fs-ext3-1k.txt'), 'utf8'));

function recipeOf(entries: string): ReturnType<typeof parseRecipe> {
  return parseRecipe(
    '/recipes/plan.yaml',
    `filesystem: { block_size: 1024, style: ext3, size_mb: 20, flex_bg: false }\nentries:\n${entries}`,
  );
}
function filesOf(r: ReturnType<typeof parseRecipe>): LayoutFile[] {
  return r.entries.flatMap((e, i) =>
    e.kind === 'file' && e.layout
      ? [
          {
            entry: i,
            path: e.path,
            size: Number(e.blocks) * 1024,
            data: [[0, Number(e.blocks)]] as Array<[number, number]>,
            layout: e.layout,
          },
        ]
      : [],
  );
}

t.test('dumpe2fs: groups, metadata and free blocks of an ext3-style image', async (t) => {
  t.equal(geo.blockSize, 1024);
  t.equal(geo.blocksPerGroup, 8192);
  t.equal(geo.flexBgSize, 0, 'no flex_bg');
  t.equal(geo.groups.length, 3);
  t.same(backupGroups(geo), [0, 1], 'groups 0 and 1 hold a superblock');
  t.equal(describeBlock(geo, 8193), "group 1's backup superblock");
  t.equal(describeBlock(geo, 8276), "group 1's inode table");
  t.ok(
    geo.free.some(([a, b]) => a === 8490 && b >= 16384),
    'group 1 is free after its inode table',
  );
});

t.test('inline indirect blocks sit just before the first data block they map', async (t) => {
  const r = recipeOf('  - { kind: file, path: /f, blocks: 300, layout: { start: 9000 } }\n');
  const [p] = planLayouts(r, geo, filesOf(r));
  t.same(p!.records, ['data 0 9000 12', 'index 9012', 'data 12 9013 256', 'index 9269', 'index 9270', 'data 268 9271 32']);
  t.same(p!.expected.index, [
    ['IND', 9012],
    ['DIND', 9269],
    ['IND', 9270],
  ]);
  t.same(p!.expected.data, [
    [0, 9000, 12],
    [12, 9013, 256],
    [268, 9271, 32],
  ]);
});

t.test('separate indirect blocks leave the data one run', async (t) => {
  const r = recipeOf('  - { kind: file, path: /f, blocks: 300, layout: { start: 9000, indirect: separate } }\n');
  const [p] = planLayouts(r, geo, filesOf(r));
  t.same(p!.expected.data, [[0, 9000, 300]]);
  t.same(p!.expected.index, [
    ['IND', 9300],
    ['DIND', 9301],
    ['IND', 9302],
  ]);
});

t.test('split and interleave make the runs asked for', async (t) => {
  const r = recipeOf(
    [
      '  - { kind: file, path: /s, blocks: 6, layout: { start: 9000, split: { blocks: 2, gap: 3 } } }',
      '  - { kind: file, path: /a, blocks: 3, layout: { interleave: { with: /b, blocks: 1 } } }',
      '  - { kind: file, path: /b, blocks: 2, layout: {} }',
    ].join('\n') + '\n',
  );
  const [s, a, b] = planLayouts(r, geo, filesOf(r));
  t.same(s!.expected.data, [
    [0, 9000, 2],
    [2, 9005, 2],
    [4, 9010, 2],
  ]);
  const a0 = a!.expected.data[0]![1];
  t.same(
    a!.expected.data,
    [
      [0, a0, 1],
      [1, a0 + 2, 1],
      [2, a0 + 4, 1],
    ],
    'a takes every other block',
  );
  t.same(
    b!.expected.data,
    [
      [0, a0 + 1, 1],
      [1, a0 + 3, 1],
    ],
    'b takes the blocks between',
  );
});

t.test('a layout that cannot be made is a ConfigError at the recipe line, saying why', async (t) => {
  const long = recipeOf(
    '  - { kind: file, path: /f, blocks: 12 }\n  - kind: file\n    path: /long\n    blocks: 9000\n    layout: { indirect: separate }\n',
  );
  const e1 = t.throws(() => planLayouts(long, geo, filesOf(long))) as ConfigError;
  t.type(e1, ConfigError);
  t.equal(e1.exitCode, 2);
  t.match(e1.message, /^\/recipes\/plan\.yaml:7: \/long: no free stretch of 9000 blocks .*impossible without flex_bg/);

  const sb = recipeOf('  - { kind: file, path: /x, blocks: 20, layout: { start: 8193 } }\n');
  t.throws(
    () => planLayouts(sb, geo, filesOf(sb)),
    /plan\.yaml:3: \/x: cannot be placed at block 8193: block 8193 is group 1's backup superblock/,
  );

  const clash = recipeOf(
    '  - { kind: file, path: /x, blocks: 20, layout: { start: 9000 } }\n  - { kind: file, path: /y, blocks: 20, layout: { start: 9010 } }\n',
  );
  t.throws(
    () => planLayouts(clash, geo, filesOf(clash)),
    /plan\.yaml:4: \/y: cannot be placed at block 9010: block 9010 is already taken by \/x/,
  );

  const sum = recipeOf('  - { kind: file, path: /x, blocks: 20, layout: { runs: [5, 5] } }\n');
  t.throws(
    () => planLayouts(sum, geo, filesOf(sum)),
    /plan\.yaml:3: \/x: the runs add up to 10 blocks, but the file has 20 data blocks/,
  );
});

t.test('debugfs block maps: indirect, extents, unwritten', async (t) => {
  const ind = parseBlockMap(
    'BLOCKS:\n(0-11):5000-5011, (IND):9000, (12-267):5012-5267, (DIND):9001, (IND):9002, (268-299):5268-5299\nTOTAL: 303\n',
  );
  t.same(ind.data, [[0, 5000, 300]], 'runs that continue across an index block are one data run');
  t.same(ind.index, [
    ['IND', 9000],
    ['DIND', 9001],
    ['IND', 9002],
  ]);
  const ext = parseBlockMap('EXTENTS:\n(0):1618, (10-40[u]):1628-1658');
  t.same(ext.data, [[0, 1618, 1]]);
  t.same(ext.unwritten, [[10, 1628, 31]]);
  const fixture = await readFile(join(fixtures, 'debugfs-stat-extents.txt'), 'utf8');
  t.ok(parseBlockMap(fixture.slice(fixture.indexOf('EXTENTS:'))).data.length > 0, 'the captured extents fixture parses');
});

t.test('the mapping oracle: same blocks pass, moved or unwritten blocks do not', async (t) => {
  const before = parseBlockMap('(0-11):5000-5011, (IND):9000, (12-32768):5012-37768');
  t.equal(diffDataMaps(before, parseBlockMap('(0-32768):5000-37768')), undefined, 'one extent over the same blocks');
  t.equal(
    diffDataMaps(before, parseBlockMap('(ETB0):700, (0-32767):5000-37767, (32768):37768')),
    undefined,
    'split into two extents',
  );
  t.match(diffDataMaps(before, parseBlockMap('(0[u]):5000')), /logical 0 is now an unwritten extent at 5000/);
  t.match(diffDataMaps(before, parseBlockMap('(0):5000')), /was logical 0-32768 on 5000-37768, now logical 0 on 5000/);
});
