import { createConnection, type Socket } from 'node:net';

/**
 * Connect to a unix socket QEMU is about to listen on: the socket file
 * appears at bind(), a moment before listen(), so ECONNREFUSED and ENOENT
 * are retried until the deadline. A dead QEMU leaves its socket file behind
 * (ECONNREFUSED forever): `signal` ends the retries when the caller knows.
 */
export async function connectUnix(path: string, timeoutMs: number, signal?: AbortSignal): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = createConnection(path);
        s.once('connect', () => {
          s.removeListener('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 3));
    }
  }
}

/**
 * Splits a byte stream into lines. Both QMP and the guest agent speak one
 * message per line; a chunk may end in the middle of one.
 */
export class LineSplitter {
  private rest = '';

  push(chunk: string): string[] {
    this.rest += chunk;
    const lines = this.rest.split('\n');
    this.rest = lines.pop() ?? '';
    return lines.map((l) => l.replace(/\r$/, ''));
  }

  /** Bytes received after the last newline (a message cut off by a disconnect). */
  get pending(): string {
    return this.rest;
  }
}
