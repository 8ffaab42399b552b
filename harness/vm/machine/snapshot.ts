import { createServer, type Socket } from 'node:net';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { InfraError } from '../../util/errors.ts';
import { TempDir } from '../../util/tempdir.ts';
import { PartialFile } from '../../util/partial-file.ts';
import type { QmpClient } from '../qmp/client.ts';
import { QmpTimeoutError } from '../qmp/errors.ts';

/**
 * VM snapshots through QEMU migration over a unix socket that qcrash itself
 * serves, so no shell ever sees a path (QEMU 7.2's exec: URIs would run
 * sh -c). Saved at "agent ready" with the test disk not yet mounted, so every
 * case restored from it starts from the same guest state on a fresh overlay
 * of the same base image. Per-case randomness must come from the host: the
 * guest's RNG state is the same after every restore. The state is written
 * as `<file>.<pid>.partial` and renamed into place when complete; a failed
 * or interrupted save removes it (a SIGKILLed one is swept by the next run).
 */
export async function saveVmState(qmp: QmpClient, file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await using tmp = await TempDir.create('snapshot');
  const sock = tmp.join('migrate.sock');
  const partial = new PartialFile(file);
  const server = createServer();
  try {
    let listening!: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    const received = new Promise<void>((resolve, reject) => {
      server.on('connection', (s: Socket) => {
        server.close();
        pipeline(s, createWriteStream(partial.path)).then(resolve, reject);
      });
      server.on('error', reject);
      server.listen(sock, () => listening());
    });
    // A failed migration never connects: do not leave this rejection unhandled.
    received.catch(() => {});
    // QEMU connects as soon as it is told to: the socket must be listening by then.
    await Promise.race([ready, received]);
    await qmp.execute('stop');
    await qmp.execute('migrate', { uri: `unix:${sock}` });
    for (;;) {
      const s = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
      if (s.status === 'completed') break;
      if (s.status === 'failed' || s.status === 'cancelled')
        throw new InfraError(`saving the VM state failed: ${s['error-desc'] ?? s.status}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await received;
    await partial.commit();
  } finally {
    server.close();
    await partial.discard();
  }
}

/**
 * The descriptor a restoring QEMU reads its saved state from (`-incoming
 * fd:3`, the file opened by the harness and inherited): QEMU reads the file
 * itself from the moment it starts, with no socket or copy in between, which
 * halved restore time against streaming it through a unix socket.
 */
export const incomingFd = 3;

/**
 * QEMU arguments that make a restoring QEMU say when it has loaded the
 * state: MIGRATION events from its first moment (the `events` migration
 * capability, which cannot be set over QMP before `-incoming` starts).
 */
export const restoreEventArgs = ['-global', 'migration.x-events=on'];

const finalMigrationStatus = new Set(['completed', 'failed', 'cancelled']);

/**
 * Wait until a QEMU started with `-incoming fd:N -S` (and restoreEventArgs)
 * has loaded the saved state, then resume it. The MIGRATION event with a
 * final status says when, instead of polling query-status. A load that
 * ended before QMP was connected (its event never sent to us) shows in the
 * status; QEMU sends the event a moment before it leaves the `inmigrate`
 * run state, so every event this connection received counts, not only
 * those after the status was asked. A QEMU that dies meanwhile ends the
 * wait at once (the QMP connection closes). The run state leaves
 * `inmigrate` right after the event; only that moment is polled.
 */
export async function finishRestore(qmp: QmpClient, file: string, timeoutMs = 60_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let since = 0;
  const st = await qmp.execute<{ status: string }>('query-status');
  if (st.status === 'inmigrate') {
    for (;;) {
      const left = deadline - performance.now();
      const e = await qmp.waitEvent('MIGRATION', Math.max(1, left), since).catch((err: unknown) => {
        if (err instanceof QmpTimeoutError)
          throw new InfraError(`restoring the VM state from ${file} did not finish in ${timeoutMs} ms`, { cause: err });
        throw err;
      });
      since = qmp.eventLog.indexOf(e) + 1;
      const status = (e.data as { status?: string } | undefined)?.status;
      if (status && finalMigrationStatus.has(status)) break;
    }
    // The run state follows the event in a bottom half; `cont` before that
    // would be swallowed (it only sets autostart, and the restored run state
    // is the saved one: paused).
    while ((await qmp.execute<{ status: string }>('query-status')).status === 'inmigrate') {
      if (performance.now() > deadline)
        throw new InfraError(`restoring the VM state from ${file} did not finish in ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }
  const m = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
  if (m.status && m.status !== 'completed')
    throw new InfraError(`restoring the VM state from ${file} failed: ${m['error-desc'] ?? m.status}`);
  await qmp.execute('cont');
}
