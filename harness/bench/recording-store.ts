import { cp, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BaseImage } from '../image/build.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { LogUnitSpec } from '../scenario/model.ts';
import { writeJsonAtomic } from '../util/atomic.ts';
import { sha256 } from '../util/hash.ts';

/**
 * `qcrash bench --recordings DIR`: the default suite's write-log recordings
 * kept between bench runs. Every recording differs (the guest's timing moves
 * its writes), and with it the states the bench checks: two commits'
 * figures compare only on the same recordings. A unit's folder in DIR is
 * reused only when it was recorded with the same kernel, base image, steps
 * and seed; otherwise the unit is recorded again and its folder replaced,
 * and the bench says which.
 */
export interface RecordingStamp {
  unit: string;
  seed: number;
  /** The kernel's identity (a stock release or a build's hash). */
  kernel: string;
  /** The base image's content digest (or its recipe's hash): another base is another disk. */
  base: string;
  /** sha256 of the scenario's steps and what ends the recording. */
  steps: string;
}

const stampFile = 'bench-recording.json';

export function recordingStamp(unit: LogUnitSpec, kernel: KernelInfo, base: BaseImage): RecordingStamp {
  return {
    unit: unit.id,
    seed: unit.seed,
    kernel: kernel.id,
    base: base.digest ?? base.recipeHash,
    steps: sha256(JSON.stringify([unit.scenario.steps, unit.crashStates.end])),
  };
}

/** A unit's folder under `dir`, as the bench names them: its id with '/' as '_' (the store and the bench's working folders alike). */
export function unitFolder(dir: string, unit: string): string {
  return join(dir, unit.replace(/\//g, '_'));
}

/** What the store holds for the unit: its folder when its stamp matches; otherwise why not (absent, or which part differs). */
export async function storedRecording(store: string, stamp: RecordingStamp): Promise<{ dir: string } | { missing: string }> {
  const dir = unitFolder(store, stamp.unit);
  let held: Partial<RecordingStamp>;
  try {
    held = JSON.parse(await readFile(join(dir, stampFile), 'utf8')) as Partial<RecordingStamp>;
  } catch {
    return { missing: 'not recorded there yet' };
  }
  const differs = (Object.keys(stamp) as Array<keyof RecordingStamp>).filter((k) => held[k] !== stamp[k]);
  return differs.length ? { missing: `recorded with another ${differs.join(', ')}` } : { dir };
}

/** Keep a unit's recording folder in the store, replacing what was there: copied beside it, then renamed into place. */
export async function storeRecording(store: string, unitDir: string, stamp: RecordingStamp): Promise<void> {
  await mkdir(store, { recursive: true });
  const dest = unitFolder(store, stamp.unit);
  const partial = `${dest}.partial`;
  await rm(partial, { recursive: true, force: true });
  await cp(unitDir, partial, { recursive: true });
  await writeJsonAtomic(join(partial, stampFile), stamp);
  await rm(dest, { recursive: true, force: true });
  await rename(partial, dest);
}
