import t from 'tap';
import { Command } from 'commander';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandExitCode, returnsExitCode } from '../../harness/cli/exit-code.ts';
import { main } from '../../harness/cli/main.ts';

// commander's parseAsync resolves to the program, not to what the action
// returned: the wrapper keeps the code where main reads it.
function program(): Command {
  const p = new Command('p').exitOverride();
  p.command('fails').action(returnsExitCode(async () => 1));
  p.command('plain').action(async () => {});
  p.command('group')
    .command('leaf')
    .argument('<n>')
    .action(returnsExitCode(async (n: string) => Number(n)));
  return p;
}

t.test('an action returns its exit code; one that returns none exits 0', async (t) => {
  const p = program();
  await p.parseAsync(['fails'], { from: 'user' });
  t.equal(commandExitCode(p), 1);
  const q = program();
  await q.parseAsync(['plain'], { from: 'user' });
  t.equal(commandExitCode(q), 0);
});

t.test("a subcommand's code is kept under the root program", async (t) => {
  const p = program();
  await p.parseAsync(['group', 'leaf', '3'], { from: 'user' });
  t.equal(commandExitCode(p), 3);
});

t.test('main returns the exit code instead of ending the process', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cli-exit-code-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const f = join(dir, 'step.jsonl');
  await writeFile(f, 'no bisect-step line here\n');
  const stderr = process.stderr.write.bind(process.stderr);
  process.stderr.write = () => true;
  try {
    t.equal(await main(['node', 'qcrash', 'bisect-combine', f]), 125, 'an action that returns 125');
    t.equal(await main(['node', 'qcrash', 'no-such-command']), 2, 'a usage error');
  } finally {
    process.stderr.write = stderr;
  }
  t.equal(process.exitCode, undefined, 'process.exitCode is left alone');
});
