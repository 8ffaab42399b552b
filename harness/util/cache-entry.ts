import { createHash } from 'node:crypto';
import { open, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { writeJsonAtomic } from './atomic.ts';
import { cacheRoot } from './paths.ts';
import { errorMessage } from './errors.ts';

/**
 * Cache entries sealed by content. When an entry (a base image, a saved VM
 * state, a kernel...) is made, the size and digest of each of its files go
 * into a checksum file written last and atomically; a lookup compares them
 * (size first, then the digest) and treats a missing, truncated or changed
 * entry as absent, so a damaged cache is rebuilt instead of being blamed on
 * the kernel (a base image changed on disk used to be a `data` finding).
 *
 * An entry is a directory (the seal is `checksums.json` inside it, and the
 * directory is usually renamed into place with its seal already inside) or a
 * single file (the seal is `<file>.checksums.json` beside it, written after
 * the file is renamed into place).
 */
export const SEAL_SCHEMA = 'qcrash-cache-seal/1';
const DIR_SEAL = 'checksums.json';
const FILE_SEAL_SUFFIX = '.checksums.json';

/**
 * SHA-256 over the file with each all-zero 64 KiB block fed as the one byte
 * "Z" and every other block as "D" plus its bytes. Base images are mostly
 * holes: this reads them at page-cache speed and hashes only their data
 * (the 672 MB limits-runs-4k image: 0.23 s instead of 2-4 s here). Sizes are
 * compared before digests, so the encoding is unambiguous.
 */
export const DIGEST_ALGORITHM = 'sha256, all-zero 64 KiB blocks as "Z", others as "D" + bytes';
const BLOCK = 64 << 10;
const READ = 1 << 20;
const zeroBlock = Buffer.alloc(BLOCK);

export async function contentDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(READ);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, READ, null);
      if (!bytesRead) break;
      for (let o = 0; o < bytesRead; o += BLOCK) {
        const b = buf.subarray(o, Math.min(o + BLOCK, bytesRead));
        if (b.length === BLOCK && b.equals(zeroBlock)) h.update('Z');
        else h.update('D').update(b);
      }
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

export interface SealedFile {
  size: number;
  digest: string;
}

export interface Seal {
  schema: typeof SEAL_SCHEMA;
  algorithm: string;
  kind: string;
  sealedAt: string;
  /** By name relative to the entry's folder. */
  files: Record<string, SealedFile>;
  /** Digests of what the entry was made from, when its name does not say (a saved VM state: its base image). */
  inputs?: Record<string, string>;
}

/** What a lookup found. `absent`: nothing there; `bad`: something there that must not be used. */
export type EntryCheck = { state: 'ok' } | { state: 'absent' } | { state: 'bad'; reason: string };

/** Files whose digest this process already computed, by path, with the stat they had: an unchanged file is not hashed twice. */
const verified = new Map<string, { signature: string; digest: string }>();

function signatureOf(st: { size: number; mtimeMs: number; ctimeMs: number; ino: number; dev: number }): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

async function digestOnce(path: string): Promise<{ size: number; digest: string }> {
  const before = await stat(path);
  const known = verified.get(path);
  if (known && known.signature === signatureOf(before)) return { size: before.size, digest: known.digest };
  const digest = await contentDigest(path);
  verified.set(path, { signature: signatureOf(before), digest });
  return { size: before.size, digest };
}

export class CacheEntry {
  private constructor(
    /** What the entry is, for messages: "base image", "saved VM state"... */
    readonly kind: string,
    /** The folder the sealed files are in. */
    readonly folder: string,
    /** Sealed file names, relative to `folder`. */
    readonly files: readonly string[],
    readonly sealPath: string,
    /** The path that is the entry (a folder or the single file): what discard removes. */
    readonly path: string,
    /**
     * What the entry is made from, by name, as digests: recorded in the seal,
     * and an entry made from other inputs is bad. For inputs that can change
     * while the entry's name stays (a base image rebuilt from the same recipe).
     */
    readonly inputs?: Readonly<Record<string, string>>,
  ) {}

  /** An entry that is a folder: `files` inside it, the seal `checksums.json` beside them. */
  static folder(kind: string, dir: string, files: readonly string[], inputs?: Record<string, string>): CacheEntry {
    return new CacheEntry(kind, dir, files, join(dir, DIR_SEAL), dir, inputs);
  }

  /** An entry that is one file: the seal is `<file>.checksums.json`. */
  static file(kind: string, file: string, inputs?: Record<string, string>): CacheEntry {
    return new CacheEntry(kind, dirname(file), [basename(file)], `${file}${FILE_SEAL_SUFFIX}`, file, inputs);
  }

  /** The entry as the user would look for it: relative to the cache root when inside it. */
  get name(): string {
    const r = relative(cacheRoot(), this.path);
    return r.startsWith('..') ? this.path : r;
  }

  /** Record each file's size and digest; the seal is written last and atomically, so it exists only for a complete entry. */
  async seal(): Promise<void> {
    const files: Record<string, SealedFile> = {};
    for (const f of this.files) files[f] = await digestOnce(join(this.folder, f));
    const seal: Seal = {
      schema: SEAL_SCHEMA,
      algorithm: DIGEST_ALGORITHM,
      kind: this.kind,
      sealedAt: new Date().toISOString(),
      files,
      ...(this.inputs ? { inputs: { ...this.inputs } } : {}),
    };
    await writeJsonAtomic(this.sealPath, seal);
  }

  /** The seal as written (call after a lookup said ok). */
  async readSeal(): Promise<Seal> {
    return JSON.parse(await readFile(this.sealPath, 'utf8')) as Seal;
  }

  /** Size first (cheap), then the digest (once per process per unchanged file). */
  async check(): Promise<EntryCheck> {
    const present = await Promise.all(this.files.map((f) => exists(join(this.folder, f))));
    let seal: Seal;
    try {
      seal = JSON.parse(await readFile(this.sealPath, 'utf8')) as Seal;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        if (!present.some(Boolean) && !(await exists(this.path))) return { state: 'absent' };
        return {
          state: 'bad',
          reason: `no ${basename(this.sealPath)}: made by a qcrash that did not record checksums, or left half made`,
        };
      }
      return { state: 'bad', reason: `${basename(this.sealPath)} is unreadable: ${errorMessage(e)}` };
    }
    if (seal.schema !== SEAL_SCHEMA || seal.algorithm !== DIGEST_ALGORITHM || !seal.files || typeof seal.files !== 'object') {
      return { state: 'bad', reason: `${basename(this.sealPath)} is not a ${SEAL_SCHEMA} seal` };
    }
    for (const [name, digest] of Object.entries(this.inputs ?? {})) {
      const was = seal.inputs?.[name];
      if (was !== digest)
        return {
          state: 'bad',
          reason: was
            ? `made from another ${name}: ${was.slice(0, 12)}, now ${digest.slice(0, 12)}`
            : `no record of the ${name} it was made from`,
        };
    }
    for (const f of this.files) {
      const want = seal.files[f];
      if (!want) return { state: 'bad', reason: `${f} is not in ${basename(this.sealPath)}` };
      const st = await stat(join(this.folder, f)).catch(() => undefined);
      if (!st) return { state: 'bad', reason: `${f} is missing` };
      if (st.size !== want.size)
        return {
          state: 'bad',
          reason: `${f} is ${st.size < want.size ? 'truncated' : 'longer'}: ${st.size} bytes, ${want.size} when it was made`,
        };
    }
    for (const f of this.files) {
      const got = await digestOnce(join(this.folder, f));
      if (got.digest !== seal.files[f]!.digest)
        return { state: 'bad', reason: `${f} changed since it was made: its content digest differs` };
    }
    return { state: 'ok' };
  }

  /** Remove the seal first (a half-removed entry then reads as unsealed, never as good), then the entry. */
  async discard(): Promise<void> {
    await rm(this.sealPath, { force: true });
    await rm(this.path, { recursive: true, force: true });
    for (const f of this.files) verified.delete(join(this.folder, f));
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** How a lookup ended: used as it was, made because it was absent, or made again because it was bad. */
export type EntryOutcome = 'hit' | 'built' | 'rebuilt';

const inFlight = new Map<string, Promise<EntryOutcome>>();

/**
 * The one lookup of a sealed cache entry: a good entry is used; an absent
 * one is built; a bad one is discarded, built again, and named on stderr with
 * why it was bad. `build` must leave the entry sealed (CacheEntry.seal, or a
 * folder renamed into place with its seal inside). Concurrent lookups of one
 * entry in this process share one check and one build.
 */
export function useCacheEntry(entry: CacheEntry, build: () => Promise<void>): Promise<EntryOutcome> {
  const running = inFlight.get(entry.sealPath);
  if (running) return running;
  const p = (async (): Promise<EntryOutcome> => {
    const found = await entry.check();
    if (found.state === 'ok') return 'hit';
    if (found.state === 'absent') {
      await build();
      return 'built';
    }
    await entry.discard();
    try {
      await build();
    } catch (e) {
      cacheNotice(`${entry.kind} ${entry.name} was bad (${found.reason}); rebuilding it failed`);
      throw e;
    }
    cacheNotice(`${entry.kind} ${entry.name} was bad (${found.reason}); rebuilt it`);
    return 'rebuilt';
  })();
  inFlight.set(entry.sealPath, p);
  const done = () => inFlight.delete(entry.sealPath);
  p.then(done, done);
  return p;
}

/** One line on stderr about the cache: what was wrong and what qcrash did about it. */
export function cacheNotice(text: string): void {
  process.stderr.write(`qcrash: cache: ${text}\n`);
}
