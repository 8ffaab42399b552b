import { readSync, writeSync } from 'node:fs';

/**
 * Synchronous positioned reads and writes that loop over short transfers.
 * Synchronous on purpose where they are used: many small transfers on a
 * file in the page cache, where a trip through libuv's thread pool costs
 * more than the syscall.
 */

/** Read `b.length` bytes at `position` into `b`; returns how many there were (fewer only where the file ends). */
export function readFullySync(fd: number, b: Buffer, position: number): number {
  let done = 0;
  while (done < b.length) {
    const n = readSync(fd, b, done, b.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Write all of `b` at `position`. */
export function writeFullySync(fd: number, b: Buffer, position: number): void {
  let done = 0;
  while (done < b.length) done += writeSync(fd, b, done, b.length - done, position + done);
}
