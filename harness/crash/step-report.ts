import { constants } from 'node:os';

/**
 * What a step's guest output says it did, parsed from the lines qcrash-io
 * prints (vm-images/guest/qcrash-io.c documents them): per file, the
 * FS_IOC_SETFLAGS ioctl's own return value and errno, and what the kernel
 * said the file was right after (FS_IOC_GETFLAGS, st_blocks); per writer,
 * how many rounds or hole stores it completed. The expectations are derived from
 * these, never from a step's exit status alone.
 */

/** One path a migrate step asked the kernel to convert. */
export interface MigrationResult {
  step: string;
  path: string;
  type: 'file' | 'dir';
  /** What syscall(SYS_ioctl, FS_IOC_SETFLAGS) returned: 0, -1 with errno, or anything else the kernel let out. */
  ret: number;
  errno: number;
  /** What the kernel said right after the ioctl, on the same fd; absent in output from a guest before the readback. */
  readback?: Readback;
}

/** FS_IOC_GETFLAGS and fstat right after FS_IOC_SETFLAGS: each a value, or the errno of its failure. */
export interface Readback {
  flags: { value: number } | { errno: number };
  /** st_blocks, 512-byte units. */
  blocks: { value: number } | { errno: number };
}

/** FS_EXTENT_FL: the inode is extent-mapped. */
export const EXTENT_FL = 0x80000;

/** Whether the readback says the file is extent-mapped; undefined when there is no readback or GETFLAGS failed. */
export function readbackExtents(r: Pick<MigrationResult, 'readback'>): boolean | undefined {
  const f = r.readback?.flags;
  return f && 'value' in f ? (f.value & EXTENT_FL) !== 0 : undefined;
}

/**
 * The ioctl's answer set against the kernel's own readback: `lied` when it
 * returned 0 and the file is not extent-mapped, or refused and the file is;
 * `truthful` when they agree; `unknown` without a readback (or a bad return).
 */
export function readbackVerdict(r: Pick<MigrationResult, 'ret' | 'errno' | 'readback'>): 'truthful' | 'lied' | 'unknown' {
  const extents = readbackExtents(r);
  const outcome = migrationOutcome(r);
  if (extents === undefined || outcome === 'bad-return') return 'unknown';
  return (outcome === 'migrated') === extents ? 'truthful' : 'lied';
}

export type MigrationOutcome = 'migrated' | 'refused' | 'bad-return';

/** 0: the kernel says it migrated; -1 with an errno: it refused; anything else is no answer the ABI allows. */
export function migrationOutcome(r: Pick<MigrationResult, 'ret' | 'errno'>): MigrationOutcome {
  if (r.ret === 0) return 'migrated';
  if (r.ret === -1 && r.errno > 0) return 'refused';
  return 'bad-return';
}

export interface MigrateReport {
  kind: 'migrate';
  files: MigrationResult[];
  /** Paths not migrated because they are neither regular files nor directories (symlinks), as chattr -R skips them. */
  skipped: Array<{ path: string; type: string }>;
  /** Paths the walk could not reach (the step fails). */
  errors: Array<{ path: string; op: string; errno: number }>;
}

export type RewriterMode = 'odirect' | 'mmap' | 'buffered';

export interface WriterReport {
  kind: 'writer';
  mode: RewriterMode;
  /** Rounds completed: the file holds round rounds-1 in every sector of the range (none when 0). */
  rounds: number;
  /** Bytes each round rewrote, from `offset` (the step's size rounded up to a page). */
  size: number;
  offset: number;
}

export interface HolesReport {
  kind: 'mmap-holes';
  /** The first `stored` of the `holes` hole pages (file order) got their store. */
  stored: number;
  holes: number;
  /** Offsets of the first and last hole page the guest found, -1 when none. */
  first: number;
  last: number;
}

export type StepReport = MigrateReport | WriterReport | HolesReport;

/** The %XX escapes qcrash-io puts in paths. */
function unescapePath(p: string): string {
  return Buffer.from(
    p.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))),
    'latin1',
  ).toString('utf8');
}

/** "0x80000" or "24": a value; "e5": the errno of the call that failed. */
function readbackValue(s: string): { value: number } | { errno: number } {
  return s.startsWith('e') ? { errno: Number(s.slice(1)) } : { value: Number(s) };
}

export function parseMigrateOutput(step: string, output: string): MigrateReport {
  const report: MigrateReport = { kind: 'migrate', files: [], skipped: [], errors: [] };
  for (const line of output.split('\n')) {
    let m = /^migrate (file|dir) (-?\d+) (\d+) (\S+)(?: flags=(0x[0-9a-f]+|e\d+) blocks=(\d+|e\d+))?$/.exec(line);
    if (m) {
      const readback = m[5] !== undefined ? { readback: { flags: readbackValue(m[5]), blocks: readbackValue(m[6]!) } } : {};
      report.files.push({
        step,
        path: unescapePath(m[4]!),
        type: m[1] as 'file' | 'dir',
        ret: Number(m[2]),
        errno: Number(m[3]),
        ...readback,
      });
      continue;
    }
    m = /^skip (\S+) (\S+)$/.exec(line);
    if (m) {
      report.skipped.push({ path: unescapePath(m[2]!), type: m[1]! });
      continue;
    }
    m = /^error (\S+) (\d+) (\S+)$/.exec(line);
    if (m) report.errors.push({ path: unescapePath(m[3]!), op: m[1]!, errno: Number(m[2]) });
  }
  return report;
}

/** The last report line of a writer's stop output, if it printed one. */
export function parseWriterOutput(output: string): WriterReport | HolesReport | undefined {
  let found: WriterReport | HolesReport | undefined;
  for (const line of output.split('\n')) {
    let m = /^writer (odirect|mmap|buffered) rounds=(\d+) size=(\d+)(?: offset=(\d+))?$/.exec(line);
    if (m) {
      found = { kind: 'writer', mode: m[1] as RewriterMode, rounds: Number(m[2]), size: Number(m[3]), offset: Number(m[4] ?? 0) };
      continue;
    }
    m = /^mmap-holes stored=(\d+) holes=(\d+) first=(-?\d+) last=(-?\d+)$/.exec(line);
    if (m) found = { kind: 'mmap-holes', stored: Number(m[1]), holes: Number(m[2]), first: Number(m[3]), last: Number(m[4]) };
  }
  return found;
}

const errnoNames = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** "EAGAIN (11)" for messages. */
export function errnoName(n: number): string {
  const name = errnoNames.get(n);
  return name ? `${name} (${n})` : `errno ${n}`;
}
