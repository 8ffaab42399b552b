import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaseSpec } from '../scenario/model.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import type { BaseImage } from '../image/build.ts';
import type { Finding } from '../findings/finding.ts';
import { isAllowed } from '../findings/finding.ts';
import { createCaseDisk } from '../image/disk.ts';
import { Vm } from '../vm/vm.ts';
import { TempDir } from '../util/tempdir.ts';
import { errorMessage } from '../util/errors.ts';
import { scanConsole } from '../checks/console.ts';
import { runWorkload, type KernelPointDriver, type WorkloadOutcome } from '../crash/workload.ts';
import { deriveExpectations } from '../crash/expectations.ts';
import { recoverWithE2fsck } from '../recovery/e2fsck.ts';
import { recoverWithKernel, writeRunLogs } from '../recovery/kernel.ts';
import type { CaseResult } from './result.ts';

export type KeepPolicy = 'failed' | 'all' | 'none';

export interface CaseEnv {
  kernel: KernelInfo;
  initrd: string;
  images: Map<string, BaseImage>;
  keep: KeepPolicy;
  /** Saved "agent ready" VM states by recipe: workload VMs restore instead of booting. */
  snapshots?: Map<string, string>;
  /** Creates the gdbstub driver for kernel/commit crash points (absent: such points are errors). */
  kernelDriver?: (vm: Vm, spec: CaseSpec) => Promise<KernelPointDriver & AsyncDisposable>;
  /**
   * Fault-injection seam for tests: called with the crash image once the VM
   * is gone and before any recovery or oracle reads it, so a test can damage
   * it (debugfs) and get a real failing case through the whole pipeline.
   * Never set by the CLI.
   */
  beforeOracle?: (crashImage: string, spec: CaseSpec) => Promise<void>;
}

/** A crash image, however it was produced: the seam for write-log replay later. */
export interface CrashImage {
  rawPath: string;
  outcome: WorkloadOutcome;
}

/**
 * One case through the whole pipeline: VM on an overlay of the base image,
 * workload with its crash point, the crash image flattened, each recovery
 * mode, every oracle. Artefacts go to `caseDir`. Never throws: a case that
 * could not run is an `error` result.
 */
export async function runCase(spec: CaseSpec, env: CaseEnv, caseDir: string): Promise<CaseResult> {
  const started = performance.now();
  const base = env.images.get(spec.scenario.recipe)!;
  const result: CaseResult = {
    id: spec.id,
    scenario: spec.scenario.name,
    suite: spec.scenario.suite,
    pointLabel: spec.pointLabel,
    repetition: spec.repetition,
    seed: spec.seed,
    status: 'error',
    findings: [],
    failing: [],
    allow: spec.scenario.allow,
    durationMs: 0,
    dir: caseDir,
  };
  await mkdir(caseDir, { recursive: true });
  const crashPath = join(caseDir, 'crash.img');
  let keepImage = false;
  try {
    await using tmp = await TempDir.create('case');
    const crash = await produceCrashImage(spec, env, base, caseDir, crashPath);
    result.fired = crash.outcome.fired;
    if (env.beforeOracle) await env.beforeOracle(crash.rawPath, spec);
    result.steps = crash.outcome.records.map((r) => ({
      name: r.name,
      kind: r.kind,
      ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
      ...(r.durationMs !== undefined ? { durationMs: Math.round(r.durationMs) } : {}),
      ...(r.output ? { output: r.output.slice(0, 2000) } : {}),
    }));
    const findings: Finding[] = [];
    findings.push(...scanConsole(await readText(join(caseDir, 'workload-console.log')), { boot: 'workload boot' }));

    const { expectations, migratedPaths } = deriveExpectations(spec.scenario.steps, crash.outcome.records, base.manifest, crash.outcome.ending === 'clean');
    await writeFile(join(caseDir, 'expectations.json'), JSON.stringify(expectations, null, 2));
    const ctx = { manifest: base.manifest, migratedPaths, expectations };
    for (const mode of spec.scenario.recovery) {
      const outcome =
        mode === 'e2fsck'
          ? await recoverWithE2fsck(crash.rawPath, tmp.join('e2fsck.img'), ctx)
          : await recoverWithKernel(crash.rawPath, tmp.join('kernel.img'), env.kernel, env.initrd, ctx, join(caseDir, 'recovery-'));
      await writeRunLogs(outcome, join(caseDir, 'e2fsck-'));
      findings.push(...outcome.findings);
    }
    result.findings = findings;
    result.failing = findings.filter((f) => !isAllowed(f, spec.scenario.allow));
    if (!crash.outcome.reached) {
      result.status = 'not-reached';
      result.error = `crash point ${spec.pointLabel} never fired: the workload did not reach it`;
    } else result.status = result.failing.length ? 'fail' : 'pass';
    keepImage = env.keep === 'all' || (env.keep === 'failed' && result.status !== 'pass');
  } catch (e) {
    result.status = 'error';
    result.error = errorMessage(e);
    keepImage = env.keep !== 'none';
  } finally {
    if (!keepImage) await rm(crashPath, { force: true });
    result.durationMs = Math.round(performance.now() - started);
  }
  return result;
}

async function produceCrashImage(spec: CaseSpec, env: CaseEnv, base: BaseImage, caseDir: string, crashPath: string): Promise<CrashImage> {
  // The case's disk is written where the crash image belongs: once QEMU is gone it is the crash image.
  const disk = await createCaseDisk(base.path, crashPath, 'raw');
  const needsGdb = spec.crashPoint.kind === 'kernel' || spec.crashPoint.kind === 'commit';
  let outcome: WorkloadOutcome;
  {
    const restoreFrom = env.snapshots?.get(spec.scenario.recipe);
    await using vm = await Vm.launch({ kernel: env.kernel, initrd: env.initrd, disk, name: 'qcrash-workload', gdb: needsGdb, ...(restoreFrom ? { restoreFrom } : {}) });
    vm.acpiLess = !env.kernel.acpi;
    try {
      if (needsGdb && env.kernelDriver) {
        const driver = await env.kernelDriver(vm, spec);
        try {
          outcome = await runWorkload(vm, spec.scenario.steps, spec.crashPoint, spec.seed, driver);
        } finally {
          await driver[Symbol.asyncDispose]();
          await writeFile(join(caseDir, 'workload-gdb.log'), (driver.transcript ?? []).join('\n') + '\n');
        }
      } else {
        outcome = await runWorkload(vm, spec.scenario.steps, spec.crashPoint, spec.seed);
      }
    } finally {
      await vm.saveArtefacts(join(caseDir, 'workload-'));
    }
  }
  return { rawPath: crashPath, outcome };
}

async function readText(p: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(p, 'utf8').catch(() => '');
}
