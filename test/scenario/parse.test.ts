import t from 'tap';
import { parseScenario } from '../../harness/run/resolve-scenario.ts';
import { expandCases } from '../../harness/scenario/expand.ts';
import { scenarioErrorOf as errorOf } from '../helpers/scenario-error.ts';

// The recipe must exist in vm-images/recipes; small-4k is the shipped test recipe.
const good = `name: demo
recipe: small-4k
steps:
  - mount: [commit=1, noatime]
  - migrate: /shapes/direct-12
  - sync
  - umount
kill:
  - none
  - before: migrate
  - after: migrate
  - delay: { step: migrate, ms: 5 }
  - commits: { step: migrate, max: 3 }
repeat: 2
`;

t.test('a good scenario parses into steps and crash points', async (t) => {
  const s = await parseScenario('scenarios/demo.yaml', good);
  t.equal(s.name, 'demo');
  t.same(
    s.steps.map((x) => x.kind),
    ['mount', 'migrate', 'sync', 'umount'],
  );
  t.same(s.steps[0], { kind: 'mount', name: 'mount', options: ['commit=1', 'noatime'] });
  t.same(s.steps[1], { kind: 'migrate', name: 'migrate', paths: ['/shapes/direct-12'], recursive: false });
  t.same(s.recovery, ['e2fsck', 'kernel'], 'both recoveries by default');
  t.same(s.allow.classes, ['leak'], 'only leaks allowed by default');
  t.equal(s.crashPoints.length, 4 + 3, 'the commits generator expands to k=1..3');
  const cases = expandCases([s], 7);
  t.equal(cases.length, 7 * 2, 'every point twice (repeat: 2)');
  t.equal(new Set(cases.map((c) => c.id)).size, cases.length, 'case ids are unique');
  t.ok(cases.some((c) => c.id === 'demo/commit-migrate-2/r1'));
  t.same(
    expandCases([s], 7).map((c) => c.seed),
    cases.map((c) => c.seed),
    'seeds are reproducible',
  );
  t.not(expandCases([s], 8)[0]!.seed, cases[0]!.seed, 'seeds depend on the run seed');
});

t.test('a YAML syntax error names file and line', async (t) => {
  const e = await errorOf('recipe: small-4k\nsteps:\n  - sync\n   - umount: [\n');
  // The parser reports the line where the broken construct starts (3) or is detected (4).
  t.match(e.message, /^scenarios\/bad\.yaml:[34](:\d+)?: YAML syntax error/);
  t.equal(e.exitCode, 2);
});

t.test('an unknown recipe names the line and close matches', async (t) => {
  const e = await errorOf('steps:\n  - sync\nkill:\n  - none\nrecipe: smal-4k\n');
  t.match(e.message, /bad\.yaml:5: unknown recipe "smal-4k"/);
  t.match(e.message, /Did you mean: .*small-4k/);
});

t.test('an unknown step names the line and close matches', async (t) => {
  const e = await errorOf('recipe: small-4k\nsteps:\n  - mount\n  - migrat: /f\nkill:\n  - none\n');
  t.match(e.message, /bad\.yaml:4: unknown step "migrat"\. Did you mean: migrate\?/);
});

t.test('a negative delay names the line', async (t) => {
  const e = await errorOf(
    'recipe: small-4k\nsteps:\n  - migrate: /shapes/direct-12\nkill:\n  - delay:\n      step: migrate\n      ms: -5\n',
  );
  t.match(e.message, /bad\.yaml:7: .*>=0.* at "kill\.0\.delay\.ms"/);
});

t.test('a kill point naming a missing step lists the steps', async (t) => {
  const e = await errorOf('recipe: small-4k\nsteps:\n  - migrate: /shapes/direct-12\nkill:\n  - after: migarte\n');
  t.match(e.message, /bad\.yaml:5: kill point refers to unknown step "migarte"\. Did you mean: migrate\?/);
});

t.test('an unknown key is named with the allowed ones', async (t) => {
  const e = await errorOf('recipe: small-4k\nrepat: 3\nsteps:\n  - sync\nkill:\n  - none\n');
  t.match(e.message, /bad\.yaml:2: unknown key "repat".*Did you mean: repeat\?/);
});

t.test('a relative path in migrate is refused', async (t) => {
  const e = await errorOf('recipe: small-4k\nsteps:\n  - migrate: shapes/f\nkill:\n  - none\n');
  t.match(e.message, /bad\.yaml:3: must be an absolute path/);
});

t.test('paths a step names must be in the recipe, normal, and not a symlink', async (t) => {
  const missing = await errorOf(
    'recipe: small-4k\nsteps:\n  - mount\n  - migrate: { paths: [/shapes/direct-12, /shapes/direct-13] }\nkill:\n  - none\n',
  );
  t.match(
    missing.message,
    /^scenarios\/bad\.yaml:4: migrate: "\/shapes\/direct-13" is not in the recipe's filesystem \(close: .*\/shapes\/direct-12/,
  );
  const escape = await errorOf('recipe: small-4k\nsteps:\n  - migrate: /../../etc/passwd\nkill:\n  - none\n');
  t.match(escape.message, /bad\.yaml:3: .*must not contain "\." or "\.\." parts/);
  const link = await errorOf('recipe: small-4k\nsteps:\n  - migrate: /shapes/slow-link\nkill:\n  - none\n');
  t.match(link.message, /bad\.yaml:3: migrate: "\/shapes\/slow-link" is a symlink/);
  const fsync = await errorOf('recipe: small-4k\nsteps:\n  - fsync: /nope\nkill:\n  - none\n');
  t.match(fsync.message, /bad\.yaml:3: fsync: "\/nope" is not in the recipe's filesystem/);
  const dir = await errorOf('recipe: small-4k\nsteps:\n  - write: { path: /no/such/dir/f, size: 10 }\nkill:\n  - none\n');
  t.match(dir.message, /bad\.yaml:3: write: the directory "\/no\/such\/dir" is not in the recipe's filesystem/);
  const ok = await parseScenario(
    'scenarios/ok.yaml',
    'recipe: small-4k\nsteps:\n  - write: { path: /new, size: 10 }\n  - fsync: /new\n  - migrate: /new\nkill:\n  - none\n',
  );
  t.equal(ok.steps.length, 3, 'a file an earlier write made may be fsynced and migrated');
});

t.test('a sleep longer than the step timeout is refused at its line', async (t) => {
  const e = await errorOf('recipe: small-4k\nsteps:\n  - mount\n  - sleep: 200000\nkill:\n  - none\n');
  t.match(e.message, /bad\.yaml:4: a sleep of 200000 ms would outlast the step timeout \(120 s\)/);
});

t.test('scenario ids: the path below scenarios/, the name: when given, else the base name; collisions refused', async (t) => {
  const { scenarioId } = await import('../../harness/scenario/parse.ts');
  const { scenariosDir } = await import('../../harness/util/paths.ts');
  t.equal(scenarioId(`${scenariosDir}/validate/durability.yaml`), 'validate/durability');
  t.equal(scenarioId(`${scenariosDir}/durability.yaml`), 'durability');
  t.equal(scenarioId('/tmp/x/durability.yaml'), 'durability');
  t.equal(scenarioId(`${scenariosDir}/validate/durability.yaml`, 'mine'), 'mine');
  const a = await parseScenario(`${scenariosDir}/durability.yaml`, good.replace('name: demo\n', ''));
  const b = await parseScenario(`${scenariosDir}/validate/durability.yaml`, good.replace('name: demo\n', ''));
  t.not(expandCases([a, b], 1)[0]!.id, expandCases([b], 1)[0]!.id, 'the shipped suites no longer collide');
  const c = await parseScenario('/tmp/elsewhere/durability.yaml', good.replace('name: demo\n', ''));
  t.throws(() => expandCases([a, c], 1), {
    message:
      /two scenarios have the id "durability": .*scenarios\/durability\.yaml and \/tmp\/elsewhere\/durability\.yaml; give one of them a distinct `name:`/,
  });
});

t.test('validation is linear: a file of many steps parses in one pass', async (t) => {
  // Not a timed test: the duplicate-name check is a Set lookup, so this only
  // has to finish; the old scan made 80k steps take minutes.
  const n = 20_000;
  const text = `recipe: small-4k\nsteps:\n${Array.from({ length: n }, () => '  - sync\n').join('')}kill:\n  - none\n`;
  const s = await parseScenario('scenarios/many.yaml', text);
  t.equal(s.steps.length, n);
  t.equal(s.steps.at(-1)!.name, `sync-${n}`);
});

t.test('may_fail marks a step whose failure in the guest is no finding; a bad value names the line', async (t) => {
  const s = await parseScenario(
    'scenarios/demo.yaml',
    'recipe: small-4k\nsteps:\n  - mount\n  - fsync: { path: /maybe, may_fail: true }\n  - migrate: { paths: /shapes/ind-13, may_fail: false }\n  - sync\nkill:\n  - none\n',
  );
  t.same(s.steps[1], { kind: 'fsync', name: 'fsync', path: '/maybe', mayFail: true });
  t.same(
    s.steps[2],
    { kind: 'migrate', name: 'migrate', paths: ['/shapes/ind-13'], recursive: false },
    'may_fail: false is the default, not recorded',
  );
  t.notOk(s.steps[3]!.mayFail, 'a bare step may not fail');
  const e = await errorOf('recipe: small-4k\nsteps:\n  - mount\n  - sync: { may_fail: yes please }\nkill:\n  - none\n');
  t.match(e.message, /bad\.yaml:4(:\d+)?: .*boolean.*may_fail/);
});

t.test('a rewriter takes an offset (a multiple of the page size) and a buffered mode; mmap-holes takes no offset', async (t) => {
  const s = await parseScenario(
    'scenarios/ok.yaml',
    'recipe: small-4k\nsteps:\n  - writer: { mode: buffered, path: /shapes/ind-13, offset: 49152, size: 16384, action: start }\nkill:\n  - none\n',
  );
  t.match(s.steps[0], { kind: 'writer', mode: 'buffered', path: '/shapes/ind-13', offset: 49152, size: 16384 });
  const odd = await errorOf(
    'recipe: small-4k\nsteps:\n  - writer: { mode: odirect, path: /shapes/ind-13, offset: 100, action: start }\nkill:\n  - none\n',
  );
  t.match(odd.message, /bad\.yaml:3: .*multiple of the page size/);
  const holes = await errorOf(
    'recipe: small-4k\nsteps:\n  - writer: { mode: mmap-holes, path: /shapes/sparse-middle, offset: 4096, action: start }\nkill:\n  - none\n',
  );
  t.match(holes.message, /bad\.yaml:3: .*mmap-holes .* takes no offset/);
});

const held = `recipe: sparse-dind-1k
cpus: 2
steps:
  - mount: [nodelalloc, commit=60]
  - writer: { mode: mmap-holes, path: /big/sparse, pace_us: 2000, action: start, name: holes-start, cpu: 1 }
  - migrate: { paths: /big/sparse, cpu: 0 }
  - writer: { mode: mmap-holes, path: /big/sparse, action: stop, name: holes-stop }
hold: { step: migrate, symbol: ext4_ext_migrate, after-call: finish_range, until: { stores: 8 }, limit-ms: 2500 }
kill:
  - none
`;

t.test('cpus, a step pinned to a vCPU and a hold parse into the model', async (t) => {
  const s = await parseScenario('scenarios/held.yaml', held);
  t.equal(s.cpus, 2);
  t.equal(s.steps[1]!.cpu, 1, 'the writer is pinned to vCPU 1');
  t.equal(s.steps[2]!.cpu, 0, 'the migration to vCPU 0');
  t.equal(s.steps[3]!.cpu, undefined, 'a step without cpu: is not pinned');
  t.same(s.hold, {
    step: 'migrate',
    symbol: 'ext4_ext_migrate',
    offset: 0,
    afterCall: 'finish_range',
    hit: 1,
    until: { marker: 'stores', count: 8 },
    limitMs: 2500,
  });
  const bare = await parseScenario(
    'scenarios/held.yaml',
    held.replace(/hold: .*\n/, 'hold: { step: migrate, symbol: ext4_ext_migrate+0x566 }\n'),
  );
  t.same(
    bare.hold,
    { step: 'migrate', symbol: 'ext4_ext_migrate', offset: 0x566, hit: 1, limitMs: 3000 },
    'no marker: held for the default limit',
  );
  const one = await parseScenario('scenarios/one.yaml', 'recipe: small-4k\nsteps:\n  - sync\nkill:\n  - none\n');
  t.equal(one.cpus, undefined, 'no cpus: the default single vCPU');
  t.equal(one.hold, undefined);
});

t.test(
  'a pin or a hold without a second vCPU, a vCPU that does not exist, a hold on an unknown step are refused at their line',
  async (t) => {
    const noCpus = await errorOf(held.replace('cpus: 2\n', ''));
    t.match(
      noCpus.message,
      /^scenarios\/bad\.yaml:4(:\d+)?: step "holes-start" is pinned to vCPU 1, but the guest has 1 vCPU: add "cpus: 2"/,
    );
    const holdOnly = await errorOf(held.replace('cpus: 2\n', '').replace(', cpu: 1', '').replace(', cpu: 0', ''));
    t.match(holdOnly.message, /bad\.yaml:7(:\d+)?: a hold stops one vCPU while another runs: add "cpus: 2"/);
    const beyond = await errorOf(held.replace('cpu: 1 }', 'cpu: 2 }'));
    t.match(
      beyond.message,
      /bad\.yaml:5(:\d+)?: step "holes-start" is pinned to vCPU 2, but the guest has 2 \(cpus: 2: vCPUs 0 to 1\)/,
    );
    const step = await errorOf(held.replace('step: migrate,', 'step: migrat,'));
    t.match(step.message, /bad\.yaml:8(:\d+)?: hold refers to unknown step "migrat"\. Did you mean: migrate\?/);
    const key = await errorOf(held.replace('limit-ms:', 'limit_ms:'));
    t.match(key.message, /bad\.yaml:8(:\d+)?: unknown key "limit_ms".*Did you mean: limit-ms\?/);
    const many = await errorOf(held.replace('cpus: 2', 'cpus: 16'));
    t.match(many.message, /bad\.yaml:2(:\d+)?: .*<=4/);
  },
);

t.test(
  'a hold and a kernel or commit kill point on one step are refused (both need the gdbstub); a write log does not hold',
  async (t) => {
    const kernel = await errorOf(held.replace('  - none\n', '  - kernel: { step: migrate, symbol: ext4_ext_migrate }\n'));
    t.match(
      kernel.message,
      /bad\.yaml:8(:\d+)?: the hold and a kernel kill point are both on step "migrate", and both need the gdbstub/,
    );
    const commit = await errorOf(held.replace('  - none\n', '  - commit: { step: migrate, k: 1 }\n'));
    t.match(commit.message, /a commit kill point are both on step "migrate"/);
    const other = await parseScenario(
      'scenarios/ok.yaml',
      held.replace('  - none\n', '  - kernel: { step: holes-stop, symbol: ext4_ext_migrate }\n  - after: migrate\n'),
    );
    t.equal(other.crashPoints.length, 2, 'a kernel point on another step, an agent point on the held step: fine');
    const log = await errorOf(held.replace('kill:\n  - none\n', 'crash-states: { from: log }\n'));
    t.match(log.message, /bad\.yaml:8(:\d+)?: a held scenario takes its crash states from "kill:" points/);
  },
);

t.test('sysctl: settings become the first step, applied per case', async (t) => {
  const s = await parseScenario(
    'scenarios/demo.yaml',
    'recipe: small-4k\nsysctl:\n  vm.dirty_expire_centisecs: 1\n  vm.dirty_writeback_centisecs: 1\nsteps:\n  - mount: [commit=30]\n  - flush-loop: start\n  - migrate: /shapes/direct-12\n  - flush-loop: { action: stop, device_flush: false, pause_ms: 5 }\nkill:\n  - before: mount\n',
  );
  t.same(
    s.steps[0],
    { kind: 'sysctl', name: 'sysctl', settings: { 'vm.dirty_expire_centisecs': 1, 'vm.dirty_writeback_centisecs': 1 } },
    'before the first step of the file',
  );
  t.same(
    s.steps.map((x) => x.name),
    ['sysctl', 'mount', 'flush-loop', 'migrate', 'flush-loop-2'],
  );
  t.same(
    s.steps[2],
    { kind: 'flush-loop', name: 'flush-loop', action: 'start', deviceFlush: true, pauseMs: 10 },
    'an fsync of the device every 10 ms by default',
  );
  t.same(s.steps[4], { kind: 'flush-loop', name: 'flush-loop-2', action: 'stop', deviceFlush: false, pauseMs: 5 });
  const none = await parseScenario('scenarios/demo.yaml', 'recipe: small-4k\nsteps:\n  - sync\nkill:\n  - none\n');
  t.same(
    none.steps.map((x) => x.kind),
    ['sync'],
    'no sysctl: no step',
  );
});

t.test('sysctl: an unknown key is named at its line with close matches; values are non-negative integers', async (t) => {
  const e = await errorOf(
    'recipe: small-4k\nsysctl:\n  vm.dirty_expire_centisecs: 1\n  vm.dirty_writeback_centisec: 1\nsteps:\n  - sync\nkill:\n  - none\n',
  );
  t.match(
    e.message,
    /bad\.yaml:4: unknown setting "vm\.dirty_writeback_centisec"\. Did you mean: vm\.dirty_writeback_centisecs[,?]/,
  );
  t.match(e.message, /Settings: .*vm\.dirty_expire_centisecs/);
  const kernelKey = await errorOf('recipe: small-4k\nsysctl:\n  kernel.panic: 1\nsteps:\n  - sync\nkill:\n  - none\n');
  t.match(kernelKey.message, /bad\.yaml:3: unknown setting "kernel\.panic"/, 'nothing outside the allow-list reaches /proc/sys');
  const neg = await errorOf('recipe: small-4k\nsysctl:\n  vm.dirty_ratio: -1\nsteps:\n  - sync\nkill:\n  - none\n');
  t.match(neg.message, /bad\.yaml:3: .*>=0/);
  const word = await errorOf('recipe: small-4k\nsysctl:\n  vm.dirty_ratio: "5; reboot"\nsteps:\n  - sync\nkill:\n  - none\n');
  t.match(word.message, /bad\.yaml:3: /, 'a value is a number, never text for the guest shell');
  const empty = await errorOf('recipe: small-4k\nsysctl: {}\nsteps:\n  - sync\nkill:\n  - none\n');
  t.match(empty.message, /bad\.yaml:2: give at least one setting/);
  const clash = await errorOf(
    'recipe: small-4k\nsysctl: { vm.dirty_ratio: 5 }\nsteps:\n  - sync: { name: sysctl }\nkill:\n  - none\n',
  );
  t.match(clash.message, /bad\.yaml:4: duplicate step name "sysctl"/);
});
