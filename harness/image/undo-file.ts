import { openSync, closeSync, fstatSync } from 'node:fs';
import { InfraError } from '../util/errors.ts';
import { readFullySync, writeFullySync } from '../util/fd-io.ts';
import { crc32cLe } from '../util/crc32c.ts';

/**
 * Putting an image back from an e2fsprogs undo file (`e2fsck -z FILE`), in
 * this process: what `e2undo FILE IMAGE` does, without its process. The
 * write-log's in-place checks (crash/writelog/materialize.ts) undo every
 * journal replay this way, hundreds of times per log, and a spawn from a
 * large process costs more than the undo itself (the fork copies the
 * parent's page tables: about 5 ms at 150 MiB, 20 ms at 400 MiB, measured
 * on the 2-core CI machine).
 *
 * The format is e2fsprogs' "E2UNDO02" (misc/e2undo.c, lib/ext2fs/undo_io.c):
 * a header block; a copy of the superblock; then key blocks, each a magic,
 * a crc32c and keys {fs block, crc32c of the data, size}, each key's data
 * in the undo blocks that follow its key block. Every checksum is checked
 * before a byte of the image is written: an undo file that does not verify
 * leaves the image untouched and says what is wrong, since a wrong undo
 * would silently change every state checked after it.
 */

const magic = 'E2UNDO02';
const keyBlockMagic = 0xcadecade;
const stateFinished = 0x1;
const featureFsOffset = 0x1;
const headerBytes = 512;
const maxExtentBlocks = 512;

export class UndoFileError extends InfraError {
  constructor(
    readonly file: string,
    readonly found: string,
    readonly expected: string,
  ) {
    super(
      `undo file ${file}: ${found}, expected ${expected}; the image it was made for cannot be put back from it (e2undo would refuse it too)`,
    );
  }
}

/** What an undo file holds, verified. */
export interface UndoFile {
  blockSize: number;
  fsBlockSize: number;
  /** Byte offset of the filesystem in the image (0 unless mke2fs -E offset). */
  fsOffset: number;
  /** The original bytes, keyed by where they go: applied in fs block order, as e2undo does. */
  extents: Array<{ fsBlock: number; bytes: Buffer }>;
}

function readAt(fd: number, file: string, length: number, position: number, what: string): Buffer {
  const b = Buffer.alloc(length);
  const got = readFullySync(fd, b, position);
  if (got < length)
    throw new UndoFileError(
      file,
      `the file ends at byte ${position + got} inside ${what}`,
      `${length} bytes of ${what} at ${position}`,
    );
  return b;
}

export function readUndoFile(file: string): UndoFile {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size < headerBytes) throw new UndoFileError(file, `${size} bytes`, `at least a ${headerBytes}-byte header`);
    const h = readAt(fd, file, headerBytes, 0, 'the header');
    const m = h.subarray(0, 8).toString('latin1');
    if (m !== magic) throw new UndoFileError(file, `magic ${JSON.stringify(m)}`, JSON.stringify(magic));
    const headerCrc = h.readUInt32LE(headerBytes - 4);
    if (crc32cLe(h.subarray(0, headerBytes - 4)) !== headerCrc)
      throw new UndoFileError(file, 'a header checksum that does not match', 'the crc32c e2fsck wrote');
    const numKeys = Number(h.readBigUInt64LE(8));
    const keyOffset = Number(h.readBigUInt64LE(24));
    const blockSize = h.readUInt32LE(32);
    const fsBlockSize = h.readUInt32LE(36);
    const state = h.readUInt32LE(44);
    const compat = h.readUInt32LE(48);
    const incompat = h.readUInt32LE(52);
    const rocompat = h.readUInt32LE(56);
    const fsOffset = compat & featureFsOffset ? Number(h.readBigUInt64LE(64)) : 0;
    if (blockSize < 1024 || blockSize > 1 << 20 || fsBlockSize === 0)
      throw new UndoFileError(
        file,
        `block size ${blockSize}, fs block size ${fsBlockSize}`,
        'an undo block size from 1 KiB to 1 MiB and a non-zero fs block size',
      );
    if (incompat || rocompat)
      throw new UndoFileError(
        file,
        `feature flags incompat 0x${incompat.toString(16)} rocompat 0x${rocompat.toString(16)}`,
        'none (this reader knows E2UNDO02 without features)',
      );
    // An unfinished undo file is one whose writer died: e2undo then forces a fsck. Here it means the check crashed.
    if (!(state & stateFinished))
      throw new UndoFileError(file, 'an unfinished undo record (its writer did not close it)', 'a finished one');
    const keysPerBlock = blockSize / 16 - 1;
    const extents: UndoFile['extents'] = [];
    let lblk = keyOffset;
    for (let i = 0; i < numKeys; i += keysPerBlock) {
      const kb = readAt(fd, file, blockSize, lblk * blockSize, `key block ${lblk}`);
      if (kb.readUInt32LE(0) !== keyBlockMagic)
        throw new UndoFileError(
          file,
          `key block ${lblk} magic 0x${kb.readUInt32LE(0).toString(16)}`,
          `0x${keyBlockMagic.toString(16)}`,
        );
      const crc = kb.readUInt32LE(4);
      kb.writeUInt32LE(0, 4);
      if (crc32cLe(kb) !== crc)
        throw new UndoFileError(file, `key block ${lblk} with a checksum that does not match`, 'the crc32c e2fsck wrote');
      lblk++;
      const n = Math.min(keysPerBlock, numKeys - i);
      for (let j = 0; j < n; j++) {
        const at = 16 + j * 16;
        const fsBlock = Number(kb.readBigUInt64LE(at));
        const blkCrc = kb.readUInt32LE(at + 8);
        const bytes = kb.readUInt32LE(at + 12);
        if (bytes > maxExtentBlocks * blockSize)
          throw new UndoFileError(
            file,
            `a key of ${bytes} bytes for fs block ${fsBlock}`,
            `at most ${maxExtentBlocks * blockSize}`,
          );
        const data = readAt(fd, file, bytes, lblk * blockSize, `the data of fs block ${fsBlock}`);
        if (crc32cLe(data) !== blkCrc)
          throw new UndoFileError(
            file,
            `saved bytes of fs block ${fsBlock} with a checksum that does not match`,
            'the crc32c e2fsck wrote',
          );
        extents.push({ fsBlock, bytes: data });
        lblk += Math.ceil(bytes / blockSize);
      }
    }
    extents.sort((a, b) => a.fsBlock - b.fsBlock);
    return { blockSize, fsBlockSize, fsOffset, extents };
  } finally {
    closeSync(fd);
  }
}

/**
 * Put back what the program that wrote `undo` overwrote, on the image open
 * as `imageFd`. Unlike e2undo, it does not compare the image's superblock
 * with the one saved: the caller owns the image and undoes right after the
 * one program that wrote it.
 */
export function applyUndo(undo: UndoFile, imageFd: number): void {
  for (const x of undo.extents) writeFullySync(imageFd, x.bytes, undo.fsOffset + x.fsBlock * undo.fsBlockSize);
}

/**
 * Where the program that wrote `file` wrote the image: [byte offset, length]
 * per key, read from the header and key blocks only (their checksums
 * checked, the saved data not read). Undefined when the file is not a
 * finished, readable undo file: the caller then knows nothing of what was
 * written. A file that does not exist: nothing was written.
 */
export function undoFileRanges(file: string): Array<[number, number]> | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    // Never opened: the program wrote nothing (materialize.ts undoes the same way).
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? [] : undefined;
  }
  try {
    const h = readAt(fd, file, headerBytes, 0, 'the header');
    if (
      h.subarray(0, 8).toString('latin1') !== magic ||
      crc32cLe(h.subarray(0, headerBytes - 4)) !== h.readUInt32LE(headerBytes - 4)
    )
      return undefined;
    const numKeys = Number(h.readBigUInt64LE(8));
    const keyOffset = Number(h.readBigUInt64LE(24));
    const blockSize = h.readUInt32LE(32);
    const fsBlockSize = h.readUInt32LE(36);
    const compat = h.readUInt32LE(48);
    const fsOffset = compat & featureFsOffset ? Number(h.readBigUInt64LE(64)) : 0;
    if (!(h.readUInt32LE(44) & stateFinished) || h.readUInt32LE(52) || h.readUInt32LE(56)) return undefined;
    if (blockSize < 1024 || blockSize > 1 << 20 || fsBlockSize === 0) return undefined;
    const keysPerBlock = blockSize / 16 - 1;
    const out: Array<[number, number]> = [];
    let lblk = keyOffset;
    for (let i = 0; i < numKeys; i += keysPerBlock) {
      const kb = readAt(fd, file, blockSize, lblk * blockSize, `key block ${lblk}`);
      const crc = kb.readUInt32LE(4);
      kb.writeUInt32LE(0, 4);
      if (kb.readUInt32LE(0) !== keyBlockMagic || crc32cLe(kb) !== crc) return undefined;
      lblk++;
      for (let j = 0; j < Math.min(keysPerBlock, numKeys - i); j++) {
        const bytes = kb.readUInt32LE(16 + j * 16 + 12);
        out.push([fsOffset + Number(kb.readBigUInt64LE(16 + j * 16)) * fsBlockSize, bytes]);
        lblk += Math.ceil(bytes / blockSize);
      }
    }
    return out;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
