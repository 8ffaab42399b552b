import { join, relative } from 'node:path';
import type { BootKernel } from './boot-kernel.ts';
import type { BaseImage } from '../../image/build.ts';
import { createCaseDisk } from '../../image/disk.ts';
import { cacheDir, cacheRoot } from '../../util/paths.ts';
import { hashJson } from '../../util/hash.ts';
import { TempDir } from '../../util/tempdir.ts';
import { CacheEntry, cacheNotice, useCacheEntry } from '../../util/cache-entry.ts';
import { errorMessage } from '../../util/errors.ts';
import type { Accel } from './accel.ts';
import { kernelCommandLine } from './argv.ts';
import { VmRestoreError } from './errors.ts';
import type { Machine, MachineLauncher, MachineSpec } from './machine.ts';

/** Bump when the VM's argv changes shape: a saved state only restores into the same machine. */
const MACHINE_VERSION = 2;

/** A saved state of this process: how to make it again, and how often it was. */
interface SavedState {
  entry: CacheEntry;
  save: () => Promise<void>;
  /** Bumped when a recovery starts: a restore that began before it failed on the old file. */
  generation: number;
  recovery?: Promise<void>;
  /** Failed again after being saved anew: the remaining cases boot. */
  unusable: boolean;
  /** vCPUs of the machine that saved it: a state restores only into as many. */
  cpus: number;
}

const savedStates = new Map<string, SavedState>();

/**
 * The saved "agent ready" state for a kernel, initramfs and base image:
 * booted once, then every case restores it instead of booting (about 0.3 s
 * instead of 2-4 s under TCG). Cached across runs and sealed by content: a
 * truncated or changed state is saved anew, never restored (QEMU loads a
 * flipped bit in guest memory without a word).
 */
export async function agentReadySnapshot(
  machines: MachineLauncher,
  kernel: BootKernel,
  initrd: string,
  base: BaseImage,
  accel: Accel,
  qemuVersion: string,
  opts: { cpus?: number } = {},
): Promise<string> {
  const cpus = opts.cpus ?? 1;
  // The command line is part of the saved guest (the kernel parsed it at boot).
  // A user's image gets its own state, keyed by its content (recipeHash), on the disk format its cases use.
  const diskFormat = base.caseDisk ?? 'raw';
  const key = hashJson({
    MACHINE_VERSION,
    kernel: kernel.id,
    bz: kernel.bzImage,
    initrd,
    image: base.recipeHash,
    accel,
    qemuVersion,
    cmdline: kernelCommandLine(),
    ...(diskFormat !== 'raw' ? { diskFormat } : {}),
    ...(cpus !== 1 ? { cpus, topology: 'sockets' } : {}),
  }).slice(0, 16);
  const file = join(cacheDir('snapshots'), `${key}.state`);
  // A rebuilt base image (mkfs picks new UUIDs) is another disk: the state
  // records the image it was booted with and is saved anew for another one.
  const entry = CacheEntry.file('saved VM state', file, base.digest ? { 'base image': base.digest } : undefined);
  const save = async () => {
    await using tmp = await TempDir.create('snapshot-boot');
    // The format the cases' disks have: the saved device state then matches theirs exactly.
    const disk = await createCaseDisk(base.path, tmp.join(diskFormat === 'raw' ? 'disk.img' : 'disk.qcow2'), diskFormat);
    {
      await using machine = await machines.launch({
        role: 'snapshot',
        kernel,
        initrd,
        disk,
        accel,
        ...(cpus !== 1 ? { cpus } : {}),
      });
      await machine.saveState(file);
    }
    await entry.seal();
  };
  await useCacheEntry(entry, save);
  if (!savedStates.has(file)) savedStates.set(file, { entry, save, generation: 0, unusable: false, cpus });
  return file;
}

/**
 * Launch a machine that restores `spec.restoreFrom`, the one way cases get
 * their machine. When the state does not load (VmRestoreError), it is
 * discarded and saved anew once, for the cases after this one, and this
 * case boots instead; a state that fails again after that is discarded and
 * the remaining cases boot. Each step is one line on stderr.
 *
 * A machine asking for another vCPU count than the state was saved with
 * boots, and the state is left alone: QEMU would refuse the load, and that
 * refusal must not be taken for a damaged state and discard a good one. A
 * file this process did not save is taken to be a 1-vCPU state (what
 * agentReadySnapshot saves unless asked for more).
 */
export async function launchRestoring(machines: MachineLauncher, spec: MachineSpec): Promise<Machine> {
  const file = spec.restoreFrom;
  if (!file) return machines.launch(spec);
  const { restoreFrom: _, ...booting } = spec;
  const known = savedStates.get(file);
  if (known?.unusable) return machines.launch(booting);
  if ((spec.cpus ?? 1) !== (known?.cpus ?? 1)) return machines.launch(booting);
  const generation = known?.generation ?? 0;
  try {
    return await machines.launch(spec);
  } catch (e) {
    if (!(e instanceof VmRestoreError)) throw e;
    await recoverSavedState(file, e, generation);
    return machines.launch(booting);
  }
}

async function recoverSavedState(file: string, error: VmRestoreError, generation: number): Promise<void> {
  const rel = relative(cacheRoot(), file);
  const name = rel.startsWith('..') ? file : rel;
  const why = restoreFailureReason(error);
  const s = savedStates.get(file);
  if (!s) {
    // Not one of this process's saved states (a caller's own file): discard nothing of the cache's.
    cacheNotice(`saved VM state ${name} did not load (${why}); this machine boots instead`);
    return;
  }
  if (s.generation !== generation) {
    // Another case's failure already started a recovery; this restore read the old file.
    await s.recovery;
    return;
  }
  s.generation++;
  if (s.generation > 1) {
    s.unusable = true;
    await s.entry.discard();
    cacheNotice(
      `saved VM state ${name} did not load again after it was saved anew (${why}); discarded it, the remaining cases boot`,
    );
    return;
  }
  s.recovery = saveAnew(s, name, why);
  await s.recovery;
}

async function saveAnew(s: SavedState, name: string, why: string): Promise<void> {
  await s.entry.discard();
  try {
    await s.save();
    cacheNotice(`saved VM state ${name} did not load (${why}); discarded it and saved it anew; this case boots instead`);
  } catch (e) {
    s.unusable = true;
    cacheNotice(
      `saved VM state ${name} did not load (${why}); discarded it, saving it anew failed (${errorMessage(e).split('\n')[0]}); cases boot instead`,
    );
  }
}

/** QEMU's own words when it gave any ("load of migration failed: Input/output error"), else the first line of the error. */
function restoreFailureReason(e: VmRestoreError): string {
  const qemu = e.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .pop();
  return (qemu ?? e.message.split('\n')[0] ?? 'unknown').replace(/^qemu-system-\S+: /, 'qemu: ');
}
