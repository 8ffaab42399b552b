/**
 * One progress line for a kernel build instead of kbuild's thousands of
 * "  CC      fs/ext4/migrate.o" lines: objects compiled of an estimate,
 * elapsed time and ETA. On a terminal the line updates in place; otherwise
 * (CI logs, a test capturing output) a plain line at every tenth of the
 * estimate and at least every `heartbeatMs`. The full make output still goes
 * to build.log; this module only reads it.
 */

/** kbuild steps that compile one object (quiet output: two spaces, the tag padded to 8, the target). */
const compileTags = new Set(['CC', 'AS', 'HOSTCC', 'HOSTCXX']);

/** The object a line of kbuild's quiet output compiles, or undefined for any other line. */
export function compiledObject(line: string): string | undefined {
  const m = /^ {2}([A-Z0-9]+) +(\S.*)$/.exec(line);
  return m && compileTags.has(m[1]!) ? m[2]!.trim() : undefined;
}

/**
 * Compile steps in `make -n` output: kbuild prints each command with its
 * quiet echo in it (`set -e;  echo '  CC      init/main.o';  gcc ...`).
 */
export function dryRunCompiledObjects(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/echo '(  [A-Z0-9]+ +[^']+)'/g)) {
    const o = compiledObject(m[1]!);
    if (o) out.push(o);
  }
  return out;
}

/** Where an estimate came from; said once at the start so a wrong ETA can be judged. */
export interface BuildEstimate {
  objects: number;
  source: string;
}

/**
 * A sink for progress text. `kind` "progress" is a line that the next one
 * replaces (a terminal sink rewrites it in place); "log" is permanent. A
 * plain `(line) => void` works: it just gets every line. `tty` says whether
 * the sink can rewrite a line; without it progress comes as plain lines.
 */
export interface ProgressSink {
  (line: string, kind?: 'log' | 'progress'): void;
  tty?: boolean;
}

/** A sink on a stream (stderr): rewrites progress lines in place on a terminal, one line each otherwise. */
export function streamProgressSink(out: NodeJS.WriteStream = process.stderr, prefix = ''): ProgressSink {
  let open = false;
  const sink: ProgressSink = (line, kind = 'log') => {
    const text = `${prefix}${line}`;
    if (out.isTTY && kind === 'progress') {
      // Never wider than the terminal: a wrapped line cannot be rewritten with \r.
      out.write(`\r\x1b[K${text.slice(0, Math.max(20, (out.columns || 100) - 1))}`);
      open = true;
      return;
    }
    out.write(`${open ? '\r\x1b[K' : ''}${text}\n`);
    open = false;
  };
  sink.tty = Boolean(out.isTTY);
  return sink;
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export interface BuildProgressOptions {
  /** Clock in ms (tests drive it). */
  now?: () => number;
  /** Minimum time between two rewrites of a terminal line. */
  ttyIntervalMs?: number;
  /** Longest silence between two plain lines while objects are being compiled. */
  heartbeatMs?: number;
}

/**
 * Counts compiled objects from make's output lines and reports them. The
 * estimate may be wrong both ways: past it, the line shows the count with
 * 99% until make finishes; `finish` always ends at the real count, 100%.
 */
export class BuildProgress {
  private compiledCount = 0;
  private readonly start: number;
  private lastEmit = -Infinity;
  private lastDecile = -1;
  private lastEmittedCount = -1;
  private done = false;
  private readonly now: () => number;
  private readonly ttyIntervalMs: number;
  private readonly heartbeatMs: number;

  constructor(
    private readonly estimate: BuildEstimate | undefined,
    private readonly sink: ProgressSink,
    opts: BuildProgressOptions = {},
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.ttyIntervalMs = opts.ttyIntervalMs ?? 250;
    this.heartbeatMs = opts.heartbeatMs ?? 30_000;
    this.start = this.now();
    this.sink(
      estimate
        ? `kernel build: about ${estimate.objects} object${estimate.objects === 1 ? '' : 's'} to compile (${estimate.source})`
        : 'kernel build: no estimate of the objects to compile',
    );
    this.emit(true);
  }

  get compiled(): number {
    return this.compiledCount;
  }

  /** Feed one line of make's output. */
  line(l: string): void {
    if (this.done || compiledObject(l) === undefined) return;
    this.compiledCount++;
    this.emit(false);
  }

  /** Called on a timer: keeps elapsed and ETA moving through long compiles and link steps. */
  tick(): void {
    if (!this.done) this.emit(false, true);
  }

  /** make finished: a successful build ends at 100% of what it really compiled. */
  finish(ok: boolean): void {
    if (this.done) return;
    this.done = true;
    const elapsed = formatDuration(this.now() - this.start);
    if (ok) this.sink(`kernel build: ${this.compiledCount}/${this.compiledCount} objects (100%), ${elapsed}`, 'log');
    else
      this.sink(
        `kernel build: failed after ${this.compiledCount}${this.estimate ? ` of about ${this.estimate.objects}` : ''} objects, ${elapsed}`,
        'log',
      );
  }

  /** The progress line as it stands. */
  text(): string {
    const elapsedMs = this.now() - this.start;
    const n = this.compiledCount;
    if (!this.estimate) return `kernel build: ${n} objects compiled, ${formatDuration(elapsedMs)}`;
    const total = Math.max(this.estimate.objects, n);
    const pct = Math.min(99, Math.floor((100 * n) / Math.max(1, total)));
    // Too few objects for a rate yet: the first ones include the slow host tools.
    const eta = n >= Math.max(5, total * 0.02) && n < total ? `, ETA ${formatDuration((elapsedMs / n) * (total - n))}` : '';
    return `kernel build: ${n}/${n > this.estimate.objects ? `${n}+` : total} objects (${pct}%), ${formatDuration(elapsedMs)}${eta}`;
  }

  private decile(): number {
    if (!this.estimate) return 0;
    return Math.min(9, Math.floor((10 * this.compiledCount) / Math.max(1, this.estimate.objects)));
  }

  private emit(first: boolean, fromTimer = false): void {
    const t = this.now();
    if (this.sink.tty) {
      if (!first && t - this.lastEmit < (fromTimer ? 0 : this.ttyIntervalMs)) return;
      this.lastEmit = t;
      this.sink(this.text(), 'progress');
      return;
    }
    // Plain lines: each tenth of the estimate, or a heartbeat when compiling has moved on.
    const d = this.decile();
    const due =
      first || d > this.lastDecile || (t - this.lastEmit >= this.heartbeatMs && this.compiledCount !== this.lastEmittedCount);
    if (!due) return;
    this.lastEmit = t;
    this.lastDecile = d;
    this.lastEmittedCount = this.compiledCount;
    this.sink(this.text(), 'log');
  }
}
