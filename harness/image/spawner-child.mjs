// The spawner (spawner.ts): a small long-lived process that runs the
// per-state tools (e2fsck, debugfs) for the harness. A fork from it copies a
// few tens of MiB of page tables, not the harness's hundreds.
// Plain JavaScript: it must start without the TypeScript loader. Node's own
// spawn, not execa: execa's streams and promises cost this process about
// 2 ms of CPU a program, as much as e2fsck -fn itself on a small image, and
// a write-log state runs three programs.
import { spawn } from 'node:child_process';
import { Buffer } from 'node:buffer';
import { setTimeout, clearTimeout } from 'node:timers';

const running = new Set();

function run(m) {
  let child;
  try {
    // An argument array, never a shell; the harness's environment with the request's on top (as execa's extendEnv).
    child = spawn(m.file, m.args, {
      env: { ...process.env, ...m.env },
      stdio: [m.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    process.send({ id: m.id, spawnError: String(e?.message ?? e) });
    return;
  }
  running.add(child);
  const out = [];
  const err = [];
  child.stdout.on('data', (b) => out.push(b));
  child.stderr.on('data', (b) => err.push(b));
  let spawnError;
  let timer;
  if (m.timeoutMs) timer = setTimeout(() => child.kill('SIGKILL'), m.timeoutMs);
  child.on('error', (e) => {
    // A program that never started (ENOENT, EACCES): no exit code, the reason said as execa says it.
    spawnError = `Command failed with ${e.code ?? 'an error'}: ${m.file} ${m.args.join(' ')}\n${e.message}`;
  });
  if (m.input !== undefined) {
    child.stdin.on('error', () => {});
    child.stdin.end(m.input);
  }
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    running.delete(child);
    // No pid: the program never started.
    if (spawnError !== undefined && child.pid === undefined) process.send({ id: m.id, spawnError });
    else
      process.send({
        id: m.id,
        exitCode: code ?? undefined,
        signal: signal ?? undefined,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
  });
}

process.on('message', run);

// The harness went away (it ended, or was killed): so do the tools it was running.
process.on('disconnect', () => {
  for (const c of running) c.kill('SIGKILL');
  process.exit(0);
});
