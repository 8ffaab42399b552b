import t from 'tap';
import { debugfsPath, UnaddressablePathError } from '../../harness/image/debugfs.ts';
import { ConfigError, ExitCode } from '../../harness/util/errors.ts';

// How a path is given to debugfs, and the one kind of name it cannot be given.

t.test('plain paths as they are, others quoted', async (t) => {
  t.equal(debugfsPath('/a/b.txt'), '/a/b.txt');
  t.equal(debugfsPath('/a b/"c"'), '"/a b/""c"""');
});

t.test('a newline in a name: a configuration error the caller can name', async (t) => {
  let thrown: unknown;
  try {
    debugfsPath('/a\nb');
  } catch (e) {
    thrown = e;
  }
  t.ok(thrown instanceof UnaddressablePathError);
  t.ok(thrown instanceof ConfigError, 'in the QcrashError tree');
  t.equal((thrown as ConfigError).exitCode, ExitCode.usage);
  t.equal((thrown as UnaddressablePathError).path, '/a\nb');
  t.equal((thrown as Error).name, 'UnaddressablePathError');
});
