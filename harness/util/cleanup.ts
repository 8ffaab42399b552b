/**
 * Process-wide teardown. Every VM and temp dir registers a cleanup here so
 * that Ctrl-C, SIGTERM, a timeout or an uncaught error takes them down;
 * `await using` handles the ordinary path, this handles the abrupt ones.
 * (SIGKILL cannot be caught: QEMU is started with a parent-death signal and
 * the next run sweeps the dead run's temp dir, see tempdir.ts.)
 */
import { InterruptedError, signalExitCode } from './errors.ts';

type Cleanup = () => Promise<void> | void;

const cleanups = new Set<Cleanup>();
let installed = false;
let exiting = false;
let received: NodeJS.Signals | undefined;

export function onCleanup(fn: Cleanup): () => void {
  installSignalHandlers();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/**
 * `making` (a file or dir being created) with a Ctrl-C in the middle covered:
 * until it settles, a teardown waits for it and runs `undo` on what it made.
 * Registering only once it is made loses a race: a signal in between finds
 * nothing to remove, and a teardown with little else to do exits first (an
 * empty qcrash-vm-* dir in CI, a stale results lock). The caller registers
 * what was made in the same turn as this resolves, checking shuttingDown()
 * first: a teardown that started meanwhile holds the undo already.
 */
export async function removedIfInterrupted<T>(making: Promise<T>, undo: (made: T) => Promise<unknown>): Promise<T> {
  const unregister = onCleanup(async () => {
    const made = await making.then(
      (m) => ({ m }),
      () => undefined,
    );
    if (made) await undo(made.m);
  });
  try {
    return await making;
  } finally {
    unregister();
  }
}

/** The teardown in progress, which every caller of runAllCleanups waits for. */
let teardown: Promise<void> | undefined;

/**
 * Run every registered cleanup, newest first, each isolated from the
 * others' failures; again for any registered meanwhile (a VM that was
 * waiting for the slot a killed VM freed starts while the teardown runs).
 * A call while a teardown runs waits for that one: the CLI's own call, on
 * its way to process.exit after a Ctrl-C, used to find the set already
 * emptied by the signal's teardown and return at once, and the process
 * exited while a VM's temp dir was still being removed.
 */
export function runAllCleanups(): Promise<void> {
  if (teardown) return teardown;
  // Cleared in a callback (a later microtask), never before it is set: a
  // teardown with nothing to do must not leave a settled promise behind.
  const running = drainCleanups().finally(() => {
    teardown = undefined;
  });
  teardown = running;
  return running;
}

async function drainCleanups(): Promise<void> {
  while (cleanups.size) {
    const all = [...cleanups].reverse();
    cleanups.clear();
    await Promise.allSettled(all.map(async (fn) => fn()));
  }
}

/** True once a signal or a fatal error started the teardown: nothing new should start. */
export function shuttingDown(): boolean {
  return exiting;
}

/**
 * What a command reports for an error that ended it: after a signal, the
 * signal (an InterruptedError, exit 128+N), never what the teardown broke on
 * its way down (a QEMU it killed while a state was being saved).
 * @public (test/faults/signal-exit.test.ts imports it in a script of its own)
 */
export function causeOf(e: unknown): unknown {
  return received ? new InterruptedError(received) : e;
}

/** Listeners that want to know a run is being interrupted (e.g. to reset a git bisect). */
const interruptListeners = new Set<(signal: NodeJS.Signals) => void>();
export function onInterrupt(fn: (signal: NodeJS.Signals) => void): () => void {
  installSignalHandlers();
  interruptListeners.add(fn);
  return () => interruptListeners.delete(fn);
}

function installSignalHandlers(): void {
  if (installed) return;
  installed = true;
  const handler = (signal: NodeJS.Signals) => {
    if (exiting) return;
    exiting = true;
    received = signal;
    for (const l of interruptListeners) {
      try {
        l(signal);
      } catch {
        /* an interrupt listener must not stop the teardown */
      }
    }
    process.stderr.write(`\nqcrash: ${signal} received, stopping VMs and removing temp files...\n`);
    const code = signalExitCode(signal);
    // Hard deadline: teardown must not hang the user's terminal.
    setTimeout(() => process.exit(code), 10_000).unref();
    void runAllCleanups().finally(() => process.exit(code));
  };
  // A harness crash must take its VMs down too: clean up, then die loudly.
  const fatal = (e: unknown) => {
    if (exiting) return;
    exiting = true;
    process.stderr.write(`qcrash: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    setTimeout(() => process.exit(3), 10_000).unref();
    void runAllCleanups().finally(() => process.exit(3));
  };
  // Whoever calls process.exit once a signal arrived (the command's error path
  // may get there before the teardown does), the exit code is the signal's.
  process.on('exit', () => {
    if (received) process.exitCode = signalExitCode(received);
  });
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  process.on('SIGHUP', handler);
}

/** A command's action whose errors, once a signal arrived, are the signal (causeOf). */
export function signalIsTheCause<A extends unknown[], R>(action: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await action(...args);
    } catch (e) {
      throw causeOf(e);
    }
  };
}
