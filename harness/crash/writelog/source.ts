import { readFile, rm, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { CrashStatesSpec, Step } from '../../scenario/model.ts';
import type { KernelInfo } from '../../kernel/kernel.ts';
import type { BaseImage } from '../../image/build.ts';
import { createCaseDisk } from '../../image/disk.ts';
import type { MachineLauncher } from '../../vm/machine/machine.ts';
import { writeJsonAtomic } from '../../util/atomic.ts';
import { InfraError, errorMessage } from '../../util/errors.ts';
import type { CrashState, CrashStateSource, LogStateFired, WriteNote } from '../crash-state.ts';
import type { StepRecord } from '../expectations.ts';
import { WriteLog, isFlush } from './format.ts';
import { ackPositions, recordsAt, runRecordedWorkload, type AckPosition, type StepAck } from './record.ts';
import type { LogDigest } from './digest.ts';
import { digestOf } from './digest-file.ts';
import { epochWrites, generateStates, type PlannedState, type StatePlan, type WriteRef } from './states.ts';
import { EpochStates, forEachState, type ForkMode } from './materialize.ts';
import { forkImage } from './replay.ts';

/**
 * The crash states of one recorded run: the workload runs once on a VM
 * whose disk goes through QEMU's blklogwrites (the log lands in the unit's
 * folder with `recording.json`, the acks and step records), then every
 * planned state is replayed from the log on the host, incrementally (one
 * pass over the log per job, never from entry 0 per state), and yielded as
 * a CrashState like a kill point's. The recording is reused when the unit's
 * folder already holds it (a resumed run), so the same states come back.
 */

/** What `recording.json` in a unit's folder holds: enough to plan the same states again. */
export interface Recording {
  schema: 'qcrash-recording/1';
  unit: string;
  /** The seed the steps ran with (their written bytes derive from it). */
  seed: number;
  /** The log file, relative to the unit's folder. */
  log: string;
  ending: 'clean' | 'killed';
  acks: StepAck[];
  records: StepRecord[];
  /** Host milliseconds: the machine's boot, and the workload to its end. */
  machineMs: number;
  workloadMs: number;
  recordedAt: string;
}

const recordingFile = 'recording.json';
const logFile = 'workload.log';

export interface RecordEnv {
  machines: MachineLauncher;
  kernel: KernelInfo;
  initrd: string;
  base: BaseImage;
  stepTimeoutMs?: number;
}

/**
 * Record the workload once: boot (a saved agent-ready state is not used:
 * the logged disk is another device setup), run the steps with their log
 * positions, end as the scenario says, keep the console and transcripts in
 * `unitDir` (`workload-*`), write recording.json last.
 */
export async function recordWorkload(
  unit: string,
  steps: readonly Step[],
  seed: number,
  end: CrashStatesSpec['end'],
  env: RecordEnv,
  unitDir: string,
): Promise<Recording> {
  const logPath = join(unitDir, logFile);
  await rm(logPath, { force: true });
  const diskPath = join(unitDir, 'disk.img');
  const disk = await createCaseDisk(env.base.path, diskPath, 'raw');
  const t0 = performance.now();
  let machineMs: number;
  let recorded;
  try {
    await using machine = await env.machines.launch({
      role: 'workload',
      kernel: env.kernel,
      initrd: env.initrd,
      disk: { ...disk, writeLog: logPath },
    });
    machineMs = performance.now() - t0;
    try {
      recorded = await runRecordedWorkload(machine, steps, seed, logPath, {
        end: end === 'kill' ? 'kill' : 'poweroff',
        ...(env.stepTimeoutMs ? { stepTimeoutMs: env.stepTimeoutMs } : {}),
      });
    } finally {
      await machine.saveArtefacts(join(unitDir, 'workload-'));
    }
  } finally {
    // The states are rebuilt from the base and the log; the disk the VM wrote is the log's end, nothing more.
    await rm(diskPath, { force: true });
  }
  const recording: Recording = {
    schema: 'qcrash-recording/1',
    unit,
    seed,
    log: logFile,
    ending: recorded.ending,
    acks: recorded.acks,
    records: recorded.records,
    machineMs: Math.round(machineMs),
    workloadMs: Math.round(performance.now() - t0 - machineMs),
    recordedAt: new Date().toISOString(),
  };
  await writeJsonAtomic(join(unitDir, recordingFile), recording);
  return recording;
}

/** The recording a unit's folder holds, or undefined when there is none (or only a damaged or partial one: record again). */
export async function loadRecording(unitDir: string): Promise<Recording | undefined> {
  let r: Recording;
  try {
    r = JSON.parse(await readFile(join(unitDir, recordingFile), 'utf8')) as Recording;
  } catch {
    return undefined;
  }
  if (r?.schema !== 'qcrash-recording/1' || !Array.isArray(r.acks) || !Array.isArray(r.records) || typeof r.log !== 'string')
    return undefined;
  return r;
}

export interface SourceOptions {
  /** Where working images and state images go (a TempDir's path). */
  workDir: string;
  /** States materialised at once (the checks' parallelism). */
  jobs: number;
}

/** The planner's options for a scenario's `crash-states:`. */
function planOptions(spec: CrashStatesSpec): Parameters<typeof generateStates>[2] {
  return {
    seed: spec.seed,
    prefixes: spec.prefixes,
    perEpoch: spec.perEpoch,
    total: spec.budget,
    randomSubsets: spec.subsets,
    torn: spec.torn,
  };
}

export class WriteLogSource implements CrashStateSource, AsyncDisposable {
  private constructor(
    readonly unit: string,
    readonly unitDir: string,
    readonly recording: Recording,
    readonly log: WriteLog,
    readonly digest: LogDigest,
    readonly acks: AckPosition[],
    readonly plan: StatePlan,
    readonly basePath: string,
    private readonly console: string,
    private readonly opts: SourceOptions,
  ) {}

  /** Open a unit's recorded log and plan its states (deterministic for a given log, acks and spec). */
  static async open(
    unit: string,
    unitDir: string,
    recording: Recording,
    basePath: string,
    spec: CrashStatesSpec,
    opts: SourceOptions,
  ): Promise<WriteLogSource> {
    const log = await WriteLog.open(join(unitDir, recording.log));
    try {
      const digest = await digestOf(log, basePath);
      const acks = ackPositions(log, recording.acks);
      const plan = generateStates(digest, acks, planOptions(spec));
      const console = await readFile(join(unitDir, 'workload-console.log'), 'utf8').catch(() => '');
      return new WriteLogSource(unit, unitDir, recording, log, digest, acks, plan, basePath, console, opts);
    } catch (e) {
      await log.close();
      throw e;
    }
  }

  get logPath(): string {
    return this.log.path;
  }

  /** What the case records about a state (its `fired`). */
  fired(s: PlannedState): LogStateFired {
    return {
      kind: 'log',
      state: s.name,
      stateKind: s.kind,
      variant: s.variant,
      epoch: s.epoch,
      position: s.position,
      entries: this.log.entries.length,
      base: s.base,
      dropped: s.dropped.map(note),
      ...(s.torn ? { torn: { ...note(s.torn), keptSectors: s.torn.keptSectors } } : {}),
      acksBefore: s.acksBefore,
      unit: this.unit,
    };
  }

  /** The step records as they stood at the state's position: only what the agent had acknowledged by then counts. */
  recordsAt(s: Pick<PlannedState, 'position'>): StepRecord[] {
    return recordsAt(this.acks, this.recording.records, s.position);
  }

  /** The state at the log's end of a run that powered off cleanly is the no-crash state (the umount's durability holds). */
  endingOf(s: Pick<PlannedState, 'position'>): 'clean' | 'killed' {
    return this.recording.ending === 'clean' && s.position >= this.log.entries.length ? 'clean' : 'killed';
  }

  private crashState(
    s: PlannedState,
    image: string,
    settle: () => void,
    materialiseMs: number,
    inPlace?: CrashState['inPlace'],
  ): CrashState {
    return {
      label: s.name,
      image,
      fired: this.fired(s),
      reached: true,
      ending: this.endingOf(s),
      records: this.recordsAt(s),
      consoles: this.console ? [{ boot: 'recording boot', text: this.console }] : [],
      phases: { materialiseMs },
      ...(inPlace ? { inPlace } : {}),
      settle,
    };
  }

  states(): AsyncIterable<CrashState> {
    return this.statesOf(this.plan.states);
  }

  /**
   * The chosen states, replayed in one pass per job (materialize.ts): `in-place`
   * checks each on its job's working image (writers must use the state's undo
   * files), `copy` forks each (needed when a VM writes the image). Up to `jobs`
   * states are out at once; each is restored or removed when settled.
   */
  async *statesOf(chosen: readonly PlannedState[], fork: ForkMode = 'in-place'): AsyncIterable<CrashState> {
    const ready: CrashState[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let failure: unknown;
    const done = forEachState(
      this.log,
      this.basePath,
      chosen,
      {
        workDir: this.opts.workDir,
        jobs: this.opts.jobs,
        fork,
        knownBaseSectorHash: (sector) => this.digest.knownBaseSectorHash(sector),
      },
      (s, image, scope) =>
        new Promise<void>((settle) => {
          ready.push(
            this.crashState(
              s,
              image,
              settle,
              scope.materialiseMs,
              fork === 'in-place'
                ? {
                    undoFile: () => scope.undoFile(),
                    unchangedFromBase: () => scope.unchangedFromBase?.(),
                    identity: () => scope.identity?.(),
                  }
                : undefined,
            ),
          );
          wake?.();
        }),
    )
      .then(
        (outcomes) => {
          const bad = outcomes.find((o) => o.error);
          if (bad) failure = new InfraError(`write log ${this.unit}: state ${bad.state.name}: ${bad.error}`);
        },
        (e: unknown) => {
          failure = e;
        },
      )
      .finally(() => {
        finished = true;
        wake?.();
      });
    for (;;) {
      const next = ready.shift();
      if (next) {
        yield next;
        continue;
      }
      if (finished) break;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
    await done;
    if (failure) throw failure instanceof Error ? failure : new InfraError(`write log ${this.unit}: ${errorMessage(failure)}`);
  }

  /** The epoch a state lies in, with its writes (stable ids): what minimisation works over. */
  epochOf(s: PlannedState): { base: number; end: number; writes: WriteRef[] } {
    const e = this.plan.epochs.find((x) => x.epoch === s.epoch);
    if (!e) throw new InfraError(`write log ${this.unit}: no epoch ${s.epoch} for state ${s.name}`);
    return { base: e.base, end: e.end, writes: epochWrites(this.digest, e) };
  }

  /** Images of the state's epoch with chosen writes lost (for ddmin); the caller disposes it. */
  async epochStates(s: PlannedState): Promise<EpochStates> {
    const e = this.epochOf(s);
    return EpochStates.create(this.log, this.basePath, e.base, e.writes, this.opts.workDir);
  }

  /** Write the images of chosen states to `dest(state)` (sparse copies), in one pass over the log. */
  async saveImages(chosen: readonly PlannedState[], dest: (s: PlannedState) => string): Promise<void> {
    if (!chosen.length) return;
    const out = await forEachState(
      this.log,
      this.basePath,
      chosen,
      { workDir: this.opts.workDir, jobs: 1, fork: 'copy', keep: () => true },
      async () => undefined,
    );
    for (const o of out) {
      if (o.error || !o.image)
        throw new InfraError(`write log ${this.unit}: could not build the image of ${o.state.name}: ${o.error ?? 'no image'}`);
      await moveImage(o.image, dest(o.state));
    }
  }

  /** How many flush entries the log holds (its flush epochs). */
  get flushes(): number {
    return this.log.entries.filter(isFlush).length;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.log.close();
  }
}

function note(w: WriteRef): WriteNote {
  return { id: w.id, index: w.index };
}

/** Move an image into the results (a rename where the folders share a filesystem, else a sparse copy). */
export async function moveImage(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch {
    await forkImage(from, to);
    await rm(from, { force: true });
  }
}
