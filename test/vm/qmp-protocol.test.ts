import t from 'tap';
import { readFile } from 'node:fs/promises';
import { parseQmpLine } from '../../harness/vm/qmp/protocol.ts';
import { QmpProtocolError } from '../../harness/vm/qmp/errors.ts';

// Lines QEMU 7.2 sent in a real session (captured by qmp-real.test.ts with
// QCRASH_CAPTURE_FIXTURES=1), classified line by line.
const fixture = new URL('../fixtures/vm/qmp-session-qemu-7.2.jsonl', import.meta.url);
const received = (await readFile(fixture, 'utf8'))
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { dir: string; msg: unknown })
  .filter((e) => e.dir === 'recv')
  .map((e) => JSON.stringify(e.msg));

t.test('every line of a real QEMU session is classified', async (t) => {
  const kinds = received.map((l) => parseQmpLine(l).kind);
  t.same(kinds, [
    'greeting',
    'return',
    'return',
    'error',
    'error',
    'event',
    'return',
    'return',
    'event',
    'return',
    'event',
    'return',
  ]);
  const errors = received.map(parseQmpLine).filter((m) => m.kind === 'error');
  t.match(errors[0], { id: 'qcrash-3', error: { class: 'CommandNotFound' } });
  const shutdown = received.map(parseQmpLine).find((m) => m.kind === 'event' && m.event.event === 'SHUTDOWN');
  t.match(shutdown, { event: { data: { reason: 'host-qmp-quit' }, timestamp: { seconds: Number } } });
});

t.test('what is not QMP is a QmpProtocolError keeping the line', async (t) => {
  for (const line of ['garbage', '[1,2]', '42', '{"hello":1}', '{"error":null,"id":"x"}']) {
    const e = (() => {
      try {
        parseQmpLine(line);
      } catch (x) {
        return x;
      }
    })();
    t.type(e, QmpProtocolError, line);
    t.equal((e as QmpProtocolError).received, line);
  }
  t.match(parseQmpLine('{"return":{},"id":7}'), { kind: 'return', id: '7' }, 'a numeric id is matched as text');
});
