import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { XMLParser } from 'fast-xml-parser';
import { runSpawned } from './spawner.ts';
import { tool } from '../util/tools.ts';
import { InfraError } from '../util/errors.ts';
import { TempDir } from '../util/tempdir.ts';

/** One <problem/> of e2fsck's problem log, every attribute kept. */
export interface Problem {
  code: number;
  /** Hex form as e2fsck writes it, e.g. "0x010004". */
  codeHex: string;
  pass: number;
  ino?: number;
  ino2?: number;
  dir?: number;
  blk?: number;
  blk2?: number;
  blkcount?: number;
  group?: number;
  num?: number;
  str?: string;
  attrs: Record<string, string>;
}

/** e2fsck's exit status is a bitmask; 8, 16 and 128 mean e2fsck itself could not do its job. */
export interface E2fsckExit {
  code: number;
  fixed: boolean;
  reboot: boolean;
  uncorrected: boolean;
  operationalError: boolean;
  usageError: boolean;
  cancelled: boolean;
  libraryError: boolean;
}

export function decodeExit(code: number): E2fsckExit {
  return {
    code,
    fixed: (code & 1) !== 0,
    reboot: (code & 2) !== 0,
    uncorrected: (code & 4) !== 0,
    operationalError: (code & 8) !== 0,
    usageError: (code & 16) !== 0,
    cancelled: (code & 32) !== 0,
    libraryError: (code & 128) !== 0,
  };
}

/**
 * e2fsck could not do its job on an image (exit 8, 16 or 128, or killed):
 * e.g. a group descriptor the journal replay overwrote. Keeps what e2fsck
 * was run with and what it said; on a crash state checks/ turns it into a
 * finding (checks/uncheckable.ts), elsewhere it is an infrastructure error.
 */
export class E2fsckCannotCheckError extends InfraError {
  constructor(
    /** e2fsck's arguments, without the program. */
    readonly argv: readonly string[],
    /** The exit status (8 when e2fsck gave none). */
    readonly exitStatus: number,
    /** stdout and stderr as e2fsck printed them. */
    readonly output: string,
  ) {
    super(
      `e2fsck ${argv.join(' ')} could not check the image (exit ${exitStatus}):\n${output.trim().split('\n').slice(-10).join('\n')}`,
    );
  }
}

export type E2fsckMode = 'journal-only' | 'check' | 'repair';

export interface E2fsckRun {
  mode: E2fsckMode;
  argv: string[];
  exit: E2fsckExit;
  /** stdout and stderr as e2fsck printed them. */
  text: string;
  xml: string;
  problems: Problem[];
  /** Not run here: the run of this state's (label), whose recovered image was byte-identical (checks/checked-images.ts). */
  reusedFrom?: string;
}

const modeArgs: Record<E2fsckMode, string[]> = {
  // -y: replaying the journal is e2fsck's own question; journal_only stops right after it.
  'journal-only': ['-y', '-E', 'journal_only'],
  check: ['-f', '-n'],
  repair: ['-f', '-y'],
};

/**
 * Run the real e2fsck on an image with a generated config that turns on its
 * XML problem log; findings come from that log, not from scraping the text.
 */
export async function runE2fsck(image: string, mode: E2fsckMode, opts: { undoFile?: string } = {}): Promise<E2fsckRun> {
  const slot = await acquireSlot();
  try {
    return await runIn(slot, image, mode, opts);
  } finally {
    releaseSlot(slot);
  }
}

async function runIn(slot: Slot, image: string, mode: E2fsckMode, opts: { undoFile?: string }): Promise<E2fsckRun> {
  const log = slot.log;
  // -z: record what e2fsck overwrites, so that the image can be put back (undo-file.ts; writelog's in-place checks).
  const argv = [...modeArgs[mode], ...(opts.undoFile ? ['-z', opts.undoFile] : []), image];
  let r;
  let xml = '';
  try {
    r = await runSpawned(await tool('e2fsck'), argv, {
      env: { E2FSCK_CONFIG: slot.conf, LANG: 'C', LC_ALL: 'C' },
      timeoutMs: 10 * 60_000,
    });
    xml = readFileSync(log, 'utf8');
  } catch (e) {
    // No problem log: e2fsck found nothing to log (or never started).
    if (!r) throw e;
  } finally {
    // The slot's next run must not read this run's log.
    rmSync(log, { force: true });
  }
  const code = r.exitCode ?? 8;
  const exit = decodeExit(code);
  const text = r.stdout + (r.stderr ? `\n${r.stderr}` : '');
  if (exit.operationalError || exit.usageError || exit.libraryError || r.exitCode === undefined) {
    throw new E2fsckCannotCheckError(argv, code, text);
  }
  return { mode, argv: ['e2fsck', ...argv], exit, text, xml, problems: parseProblemLog(xml) };
}

/**
 * Where one e2fsck run writes its problem log, and the config that names
 * it: slot k of the scratch folder. A write-log check runs e2fsck hundreds
 * of times, and a folder, or even a config file written, per run cost more
 * than e2fsck -fn's own work on a small image: a slot's config is written
 * once and serves every run that takes the slot after it (one run at a
 * time: runs in parallel take different slots).
 */
interface Slot {
  conf: string;
  log: string;
  owner: Scratch;
}

interface Scratch {
  dir: TempDir;
  free: Slot[];
  made: number;
}

let scratch: Promise<Scratch> | undefined;
let active = 0;
let removing: Promise<void> | undefined;

async function acquireSlot(): Promise<Slot> {
  active++;
  clearTimeout(idleTimer);
  idleTimer = undefined;
  try {
    scratch ??= TempDir.create('e2fsck').then((dir) => ({ dir, free: [], made: 0 }));
    const s = await scratch;
    const reused = s.free.pop();
    if (reused) return reused;
    const index = s.made++;
    const slot = { conf: s.dir.join(`e2fsck-${index}.conf`), log: s.dir.join(`problems-${index}.xml`), owner: s };
    // broken_system_clock: the guest's clock is not the host's, and a
    // superblock "written in the future" says nothing about the migration.
    // Synchronous: a promise-based open, write and close cost more than the write.
    writeFileSync(slot.conf, `[options]\n\tproblem_log_filename = ${slot.log}\n\tbroken_system_clock = true\n`);
    return slot;
  } catch (e) {
    releaseSlot(undefined);
    throw e;
  }
}

/**
 * The scratch folder goes once no run has used it for `idleMs`, so that a
 * run of qcrash inside a longer-lived process (tests, validate, nightly)
 * leaves no temp dir behind; a process that exits removes it (TempDir's exit
 * hook), a signal through the cleanup registry, and a SIGKILL leaves it to
 * the next run's sweep. Not sooner: a
 * write-log check runs e2fsck between stretches of its own work on each
 * state, and a folder and config made again after every stretch (when it
 * went after one turn of the event loop) cost about half a millisecond of
 * the harness a state.
 */
const idleMs = 1000;
let idleTimer: ReturnType<typeof setTimeout> | undefined;

function releaseSlot(slot: Slot | undefined): void {
  slot?.owner.free.push(slot);
  if (--active > 0) return;
  clearTimeout(idleTimer);
  idleTimer = setTimeout(removeIdleScratch, idleMs);
  idleTimer.unref();
}

function removeIdleScratch(): void {
  clearTimeout(idleTimer);
  idleTimer = undefined;
  if (active > 0 || !scratch) return;
  const s = scratch;
  scratch = undefined;
  const r: Promise<void> = s
    .then((d) => d.dir.remove())
    .catch(() => {})
    .finally(() => {
      if (removing === r) removing = undefined;
    });
  removing = r;
}

/** Remove an idle scratch folder now and wait until it is gone (a caller about to report that it left no temp dir). */
export async function e2fsckScratchSettled(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  if (idleTimer) removeIdleScratch();
  await removing;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  isArray: (name) => name === 'problem' || name === 'header',
});

/** Parse e2fsck's problem log (problem_log_filename). An empty log means no problems. */
export function parseProblemLog(xml: string): Problem[] {
  // Most runs of a write-log check log no problem (a clean -fn, a journal
  // replay): only <problem> elements make the list, so without one there is
  // nothing to parse, and the XML parser was a third of a millisecond a state.
  if (!/<problem[\s/>]/.test(xml)) return [];
  const doc = parser.parse(xml) as { problem_log?: { problem?: Array<Record<string, string>> } };
  const list = doc.problem_log?.problem ?? [];
  return list.map((attrs) => {
    const code = parseInt(attrs.code ?? '0', 16);
    const num = (k: string) => (attrs[k] !== undefined ? Number(attrs[k]) : undefined);
    const p: Problem = { code, codeHex: attrs.code ?? '', pass: code >> 16, attrs };
    for (const k of ['ino', 'ino2', 'dir', 'blk', 'blk2', 'blkcount', 'group', 'num'] as const) {
      const v = num(k);
      if (v !== undefined && Number.isFinite(v)) p[k] = v;
    }
    if (attrs.str !== undefined) p.str = attrs.str;
    return p;
  });
}

/** "Inode 14, i_blocks is 200, should be 96." lines: the current value is only in the text. */
export function iBlocksFromText(text: string): Map<number, { is: number; should: number }> {
  const m = new Map<number, { is: number; should: number }>();
  for (const x of text.matchAll(/Inode (\d+), i_blocks is (\d+), should be (\d+)/g)) {
    m.set(Number(x[1]), { is: Number(x[2]), should: Number(x[3]) });
  }
  return m;
}
