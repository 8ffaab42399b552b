import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { projectRoot } from '../../harness/util/paths.ts';

// The README's examples marked <!-- runnable --> run here as written, so the
// commands a newcomer copies keep working. Each is a plain command (no shell:
// it runs as an argument array), `node bin/qcrash.js ...`; an `--out DIR` is
// pointed at a fresh temp folder so reruns never meet an old run.
export interface RunnableCommand {
  line: number;
  argv: string[];
}

/** The commands of every ```sh block that follows a `<!-- runnable -->` line. */
export function runnableCommands(markdown: string): RunnableCommand[] {
  const lines = markdown.split('\n');
  const out: RunnableCommand[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '<!-- runnable -->') continue;
    if (lines[i + 1]?.trim() !== '```sh')
      throw new Error(`README.md:${i + 1}: <!-- runnable --> must stand right before a \`\`\`sh block`);
    for (let j = i + 2; j < lines.length && lines[j]!.trim() !== '```'; j++) {
      const text = lines[j]!.replace(/\s+#.*$/, '').trim();
      if (!text) continue;
      if (/[|&;<>$`'"*?\\]/.test(text))
        throw new Error(`README.md:${j + 1}: a runnable example must be a plain command, without shell syntax: ${text}`);
      out.push({ line: j + 1, argv: text.split(/\s+/) });
    }
  }
  return out;
}

const readme = await readFile(join(projectRoot, 'README.md'), 'utf8');
const commands = runnableCommands(readme);

t.test('the README has runnable examples, and the extractor refuses shell syntax', async (t) => {
  t.ok(commands.length >= 6, `${commands.length} runnable commands`);
  t.ok(
    commands.some((c) => c.argv.includes('--list')),
    'a dry run among them',
  );
  t.ok(
    commands.some((c) => c.argv[2] === 'run' && !c.argv.includes('--list')),
    'and a real run',
  );
  t.throws(() => runnableCommands('<!-- runnable -->\n```sh\nnode bin/qcrash.js run | tee x\n```\n'), /plain command/);
  t.throws(() => runnableCommands('<!-- runnable -->\n```console\nx\n```\n'), /must stand right before/);
});

const scratch = await mkdtemp(join(tmpdir(), 'readme-examples-'));
t.teardown(() => rm(scratch, { recursive: true, force: true }));

for (const [n, c] of commands.entries()) {
  t.test(`README.md:${c.line}: ${c.argv.join(' ')}`, { timeout: 900_000 }, async (t) => {
    t.same(c.argv.slice(0, 2), ['node', 'bin/qcrash.js'], 'a qcrash command');
    const argv = c.argv
      .slice(2)
      .map((a, i, all) => (all[i - 1] === '--out' || all[i - 1] === '-o' ? join(scratch, `out-${n}`) : a));
    const r = await execa('node', [join(projectRoot, 'bin/qcrash.js'), ...argv], { cwd: projectRoot, reject: false, all: true });
    if (r.exitCode !== 0) t.comment(r.all?.slice(-3000) ?? '');
    t.equal(r.exitCode, 0, 'exit 0');
    if (argv.includes('--list'))
      t.match(r.stdout, /^\d+ kill case\(s\) and \d+ write-log recording\(s\)/m, 'ends with the count');
    if (argv.includes('--help')) t.match(r.stdout, /^Usage: qcrash /, 'prints its usage');
    if (argv[0] === 'run' && !argv.includes('--list')) t.match(r.stdout, /Result: PASS/, 'the run passed');
  });
}
