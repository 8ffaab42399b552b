import { execaNode } from 'execa';
import { fileURLToPath } from 'node:url';
import { InfraError } from '../util/errors.ts';
import { onCleanup } from '../util/cleanup.ts';
import type { RunResult } from '../util/exec.ts';

/**
 * The per-state tools (e2fsck, debugfs) run from a small long-lived helper
 * process (spawner-child.mjs) rather than from the harness itself. A spawn
 * forks its parent: from the harness (about 250 MiB resident during a
 * write-log run) that cost 9-25 ms of its time a program here, several
 * times what e2fsck -fn takes on a small image, and a state runs three.
 * From the helper (about 40 MiB) it costs about 1 ms. The helper starts at
 * the first request, goes when the harness does (it sees its IPC channel
 * close), and keeps the harness from exiting only while a request is open.
 */
export interface SpawnOptions {
  /** Added to the helper's environment (which is the harness's as it started it). */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** The program's stdin (default: none). */
  input?: string;
}

interface Reply {
  id: number;
  exitCode?: number;
  signal?: string;
  stdout?: string;
  stderr?: string;
  spawnError?: string;
}

const childPath = fileURLToPath(new URL('./spawner-child.mjs', import.meta.url));
/** Plain node, no TypeScript loader: the helper starts in a few tens of milliseconds. */
const launchHelper = () =>
  execaNode(childPath, [], {
    nodeOptions: [],
    ipc: true,
    serialization: 'advanced',
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'inherit',
    reject: false,
  });
type Helper = ReturnType<typeof launchHelper>;
let helper: Helper | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();

function start(): Helper {
  const c = launchHelper();
  void c.catch(() => undefined);
  const drop = onCleanup(() => {
    c.kill('SIGKILL');
  });
  c.on('message', (m: Reply) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (!pending.size) idle(c);
    p.resolve(m);
  });
  c.on('exit', (code, signal) => {
    drop();
    if (helper === c) helper = undefined;
    const e = new InfraError(
      `the tool spawner process ended (${signal ?? `exit ${code}`}) with ${pending.size} program(s) running`,
    );
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  });
  c.on('error', () => {});
  idle(c);
  return c;
}

/** Nothing open: the helper and its channel do not keep the harness alive. */
function idle(c: Helper): void {
  c.unref();
  (c.channel as { unref?: () => void } | undefined)?.unref?.();
}

function busy(c: Helper): void {
  c.ref();
  (c.channel as { ref?: () => void } | undefined)?.ref?.();
}

/** Run a program through the helper; the same result as util/exec.ts `run` (never throws for a non-zero exit). */
export async function runSpawned(file: string, args: readonly string[], opts: SpawnOptions = {}): Promise<RunResult> {
  const started = performance.now();
  helper ??= start();
  const c = helper;
  const id = nextId++;
  const reply = await new Promise<Reply>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    busy(c);
    c.send({ id, file, args: [...args], env: opts.env ?? {}, timeoutMs: opts.timeoutMs, input: opts.input }, (e) => {
      if (!e) return;
      pending.delete(id);
      reject(new InfraError(`cannot reach the tool spawner process: ${e.message}`));
    });
  });
  // As execa reports a program that could not start: no exit code, the reason as its stderr.
  if (reply.spawnError !== undefined)
    return {
      argv: [file, ...args],
      exitCode: undefined,
      signal: undefined,
      stdout: '',
      stderr: reply.spawnError,
      failed: true,
      durationMs: performance.now() - started,
    };
  return {
    argv: [file, ...args],
    exitCode: reply.exitCode,
    signal: reply.signal,
    stdout: reply.stdout ?? '',
    stderr: reply.stderr ?? '',
    failed: reply.exitCode !== 0,
    durationMs: performance.now() - started,
  };
}

/** CPU milliseconds the helper and the programs it ran have used so far (0 without a helper): /proc/PID/stat's utime, stime, cutime, cstime. */
export async function spawnerCpuMs(): Promise<number> {
  const pid = helper?.pid;
  if (pid === undefined) return 0;
  const { readFile } = await import('node:fs/promises');
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (!stat) return 0;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [11, 12, 13, 14].reduce((n, i) => n + Number(fields[i]), 0) * 10;
}
