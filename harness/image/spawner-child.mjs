// The spawner (spawner.ts): a small long-lived process that runs the
// per-state tools (e2fsck, debugfs) for the harness. A fork from it copies a
// few tens of MiB of page tables, not the harness's hundreds.
// Plain JavaScript: it must start without the TypeScript loader.
import { execa } from 'execa';

const running = new Set();

process.on('message', async (m) => {
  // An argument array, never a shell; the output as bytes, decoded once.
  const child = execa(m.file, m.args, {
    env: m.env,
    ...(m.input !== undefined ? { input: m.input } : { stdin: 'ignore' }),
    reject: false,
    encoding: 'utf8',
    stripFinalNewline: false,
    ...(m.timeoutMs ? { timeout: m.timeoutMs, killSignal: 'SIGKILL' } : {}),
  });
  running.add(child);
  const r = await child;
  running.delete(child);
  // A program that never started (ENOENT, EACCES) has no exit code: say why, as execa does.
  if (r.exitCode === undefined && !r.signal) process.send({ id: m.id, spawnError: r.originalMessage || r.message });
  else process.send({ id: m.id, exitCode: r.exitCode, signal: r.signal, stdout: r.stdout, stderr: r.stderr });
});

// The harness went away (it ended, or was killed): so do the tools it was running.
process.on('disconnect', () => {
  for (const c of running) c.kill('SIGKILL');
  process.exit(0);
});
