import { constants } from 'node:os';

/**
 * What a step's guest output says it did, parsed from the lines qcrash-io
 * prints (vm-images/guest/qcrash-io.c documents them): per file, the
 * FS_IOC_SETFLAGS ioctl's own return value and errno; per writer, how many
 * rounds or hole stores it completed. The expectations are derived from
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

export interface WriterReport {
  kind: 'writer';
  mode: 'odirect' | 'mmap';
  /** Rounds completed: the file holds round rounds-1 in every sector (none when 0). */
  rounds: number;
  /** Bytes each round rewrote, from offset 0 (the step's size rounded up to a page). */
  size: number;
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
  return Buffer.from(p.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
}

export function parseMigrateOutput(step: string, output: string): MigrateReport {
  const report: MigrateReport = { kind: 'migrate', files: [], skipped: [], errors: [] };
  for (const line of output.split('\n')) {
    let m = /^migrate (file|dir) (-?\d+) (\d+) (\S+)$/.exec(line);
    if (m) {
      report.files.push({ step, path: unescapePath(m[4]!), type: m[1] as 'file' | 'dir', ret: Number(m[2]), errno: Number(m[3]) });
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
    let m = /^writer (odirect|mmap) rounds=(\d+) size=(\d+)$/.exec(line);
    if (m) {
      found = { kind: 'writer', mode: m[1] as 'odirect' | 'mmap', rounds: Number(m[2]), size: Number(m[3]) };
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
