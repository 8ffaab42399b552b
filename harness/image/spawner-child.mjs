// The spawner (spawner.ts): a small long-lived process that runs the
// per-state tools (e2fsck, debugfs) for the harness. A fork from it copies a
// few tens of MiB of page tables, not the harness's hundreds.
// Plain JavaScript: it must start without the TypeScript loader.
import { spawn } from 'node:child_process';

const running = new Set();

process.on('message', (m) => {
  const out = [];
  const err = [];
  let child;
  try {
    child = spawn(m.file, m.args, { env: { ...process.env, ...m.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    process.send({ id: m.id, spawnError: String(e?.message ?? e) });
    return;
  }
  running.add(child);
  const timer = m.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), m.timeoutMs) : undefined;
  child.stdout.on('data', (d) => out.push(d));
  child.stderr.on('data', (d) => err.push(d));
  let answered = false;
  child.on('error', (e) => {
    // A program that never started (ENOENT, EACCES) gets no 'close' worth waiting for.
    if (child.pid !== undefined || answered) return;
    answered = true;
    clearTimeout(timer);
    running.delete(child);
    process.send({ id: m.id, spawnError: String(e?.message ?? e) });
  });
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    running.delete(child);
    if (answered) return;
    answered = true;
    process.send({ id: m.id, exitCode: code ?? undefined, signal: signal ?? undefined, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
  });
});

// The harness went away (it ended, or was killed): so do the tools it was running.
process.on('disconnect', () => {
  for (const c of running) c.kill('SIGKILL');
  process.exit(0);
});
