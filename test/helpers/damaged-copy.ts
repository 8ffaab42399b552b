import { copyFileSync, openSync, writeSync, closeSync } from 'node:fs';

/** A copy of `src` at `dest` with `bytes` written over it at `offset`: a file damaged the way a bad copy or a stray write damages it. */
export function damagedCopy(src: string, dest: string, offset: number, bytes: Buffer): string {
  copyFileSync(src, dest);
  const fd = openSync(dest, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
  return dest;
}
