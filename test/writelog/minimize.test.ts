import t from 'tap';
import { ddmin, minimizeDropped, NotFailingError } from '../../harness/crash/writelog/minimize.ts';
import type { WriteRef } from '../../harness/crash/writelog/states.ts';

// Delta debugging against oracles whose answer is known, so the result can
// be checked exactly; the real oracle (e2fsck on replayed images) is in vm-log.test.ts.
const items = Array.from({ length: 40 }, (_, i) => i);

t.test('ddmin finds the two items the failure needs among 40', async (t) => {
  const calls: number[][] = [];
  const r = await ddmin(items, async (s) => {
    calls.push(s);
    return s.includes(3) && s.includes(31);
  });
  t.same(r.minimal, [3, 31]);
  t.equal(r.exhausted, false);
  t.equal(r.tests, calls.length, 'each call counted once');
  t.equal(new Set(calls.map((c) => c.join(','))).size, calls.length, 'no set asked twice');
  t.ok(r.tests < 60, `fewer tests than items squared (${r.tests})`);
});

t.test('a single cause, a failure that needs nothing dropped, and order kept', async (t) => {
  t.same((await ddmin(items, async (s) => s.includes(17))).minimal, [17]);
  t.same((await ddmin(items, async () => true)).minimal, [], 'fails whatever is dropped: the minimal drop is none');
  t.same((await ddmin(items, async (s) => s.includes(30) && s.includes(2) && s.includes(11))).minimal, [2, 11, 30]);
});

t.test('a set that does not fail is refused; a budget stops early and says so', async (t) => {
  await t.rejects(
    ddmin(items, async () => false),
    NotFailingError,
  );
  const r = await ddmin(items, async (s) => s.includes(3) && s.includes(31), { maxTests: 4 });
  t.equal(r.exhausted, true);
  t.ok(r.minimal.includes(3) && r.minimal.includes(31), 'what it returns still fails');
  t.ok(r.tests <= 4);
});

t.test('minimizeDropped: the lost writes that matter and the landed writes the failure needs', async (t) => {
  const ref = (i: number): WriteRef => ({ id: `w${i}`, index: i, sector: i * 8, nrSectors: 8 });
  const epoch = Array.from({ length: 10 }, (_, i) => ref(i + 100));
  // The failure: write 107 lost while 101 (the "commit") landed; 103 also matters only if lost with 107.
  const fails = async (dropped: WriteRef[]) => {
    const lost = new Set(dropped.map((d) => d.index));
    return lost.has(107) && !lost.has(101);
  };
  const r = await minimizeDropped([ref(103), ref(105), ref(107), ref(108), ref(109)], epoch, fails);
  t.same(
    r.dropped.map((d) => d.id),
    ['w107'],
  );
  t.same(
    r.needed.map((d) => d.id),
    ['w101'],
  );
  t.equal(r.exhausted, false);
});
