import t from 'tap';
import { readFileSync } from 'node:fs';
import { formatBench } from '../../harness/bench/bench.ts';

// The write-log bench's printed lines from JSON it wrote on real runs
// (test/fixtures/bench/README.md): where a job's time a state went, and the
// most the in-place path could reach with its e2fsck runs.
const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/bench/${name}`, import.meta.url), 'utf8')) as Record<string, unknown>;

t.test("a path's line splits a job's time a state, and the headline gives the in-place path's bound", async (t) => {
  const lines = formatBench(fixture('writelog-2026-12-06-idle.json')).split('\n');
  const long = lines.findIndex((l) => l.startsWith('write-log, 1020 flush epochs'));
  t.match(lines[long], /jobs 2, images in memory, same e2fsck results on every path/);
  t.match(
    lines[long + 1],
    /fstests loop .*: 3603.3 states\/min \(16.7 ms\/state; a job's 33.4 ms a state: replay-log 2.9, the two e2fsck runs 15\)$/,
  );
  t.match(lines[long + 3], /in place .*\(9 ms\/state; a job's 18.0 ms a state: the two e2fsck runs 15.9\) {2}1.86x$/);
  t.ok(lines.includes('write-log vs fstests loop: 1.86x'));
  // 33.4 ms of the fstests loop's state over the in-place path's 15.9 ms of e2fsck.
  t.ok(
    lines.includes(
      "  (at most 2.10x with these e2fsck runs: the fstests loop's state over the in-place path's two e2fsck runs alone)",
    ),
  );
  t.match(
    lines.find((l) => l.startsWith("write-log, the default suite's own")),
    /405 prefix states, jobs 2, images in memory, same e2fsck results/,
  );
});

t.test('JSON from before the images moved to memory and the checks were timed still prints, and claims neither', async (t) => {
  const text = formatBench(fixture('writelog-2026-12-06-disk.json'));
  t.match(text, /983 prefix states, jobs 2, images on disk, same e2fsck results on every path/);
  t.match(text, /fstests loop .*\(54 ms\/state; a job's 108.0 ms a state: replay-log 14.2\)/);
  t.match(text, /in place .*\(25.3 ms\/state; a job's 50.6 ms a state\) {2}2.13x/);
  t.notMatch(text, /e2fsck runs/, 'no e2fsck time where none was measured');
  t.notMatch(text, /at most/, 'and no bound');
});
