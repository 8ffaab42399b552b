import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { baseImageKey, type Scenario } from '../scenario/model.ts';
import type { BaseImage } from '../image/build.ts';
import type { KernelInfo } from '../kernel/kernel.ts';
import { detectAccel } from '../vm/machine/accel.ts';
import type { RunMeta } from '../results/run.ts';
import { RunStore } from '../results/store.ts';
import { runKey, shardIdentity } from '../results/shards.ts';
import type { ResolvedRun } from './run-config.ts';
import type { PlannedShard } from './case-selection.ts';
import { toolVersions } from './versions.ts';
import { qcrashVersion } from '../util/version.ts';

/** What a new run records before its first case. */
export interface RunFacts {
  build: string;
  scenarios: readonly Scenario[];
  kernel: KernelInfo;
  /** The base images (absent when the run builds nothing: a shard left with no case). */
  images?: ReadonlyMap<string, BaseImage>;
  shard?: PlannedShard;
}

/** A new run's folder with its run.json: what it runs, on what, and how it is configured (what --resume and merge read). */
export async function createRunFolder(run: ResolvedRun, facts: RunFacts): Promise<RunStore> {
  return RunStore.create(run.dir, await runMeta(run, facts));
}

export async function runMeta(run: ResolvedRun, facts: RunFacts): Promise<RunMeta> {
  const { kernel } = facts;
  const meta: RunMeta = {
    schema: 'qcrash-run/1',
    runId: run.runId,
    startedAt: new Date().toISOString(),
    host: hostname(),
    kernel: {
      id: kernel.id,
      release: kernel.release,
      kind: kernel.kind,
      ...(kernel.provenance ? { provenance: kernel.provenance } : {}),
    },
    versions: await toolVersions(kernel.release),
    seed: run.seed,
    accel: (await detectAccel()).accel,
    scenarios: facts.scenarios.map((s) => {
      const digest = s.image ? facts.images?.get(baseImageKey(s))?.digest : undefined;
      return {
        name: s.name,
        file: resolve(s.file),
        hash: s.hash,
        suite: s.suite,
        ...(s.image ? { image: s.image } : {}),
        ...(digest ? { imageDigest: digest } : {}),
      };
    }),
    config: run.config,
    qcrash: { version: qcrashVersion, build: facts.build },
  };
  if (facts.shard) meta.shard = { ...facts.shard, runKey: runKey(shardIdentity(meta, facts.shard.caseListHash)) };
  return meta;
}
