import t from 'tap';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { tsImport } from 'tsx/esm/api';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { validate as lintDockerfile } from 'dockerfile-utils';
import { vmMemoryMiB } from '../../harness/vm/machine/pool.ts';

// The engine files shipped in the repository, each checked offline by its
// engine's own rules: GitHub's workflow parser, GitLab's CI schema, the
// Kubernetes OpenAPI schema (kubernetes-models), a Dockerfile linter. Every
// validator is also shown a broken copy, so each check is proven able to fail.

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (p: string) => readFile(join(root, p), 'utf8');
// @actions/workflow-parser imports its JSON schema without an import attribute,
// which plain Node 20 refuses; tsx's loader accepts it (as for bin/qcrash.js), scoped to this import.
const { parseWorkflow, convertWorkflowTemplate, NoOperationTraceWriter } = (await tsImport(
  '@actions/workflow-parser',
  import.meta.url,
)) as typeof import('@actions/workflow-parser');
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (a: Ajv) => Ajv;

// ---------------------------------------------------------------- GitHub Actions

async function workflowErrors(content: string): Promise<string[]> {
  const parsed = parseWorkflow({ name: 'qcrash.yml', content }, new NoOperationTraceWriter());
  // convertWorkflowTemplate adds the cross-job checks (needs: naming a job that does not exist).
  if (parsed.value) await convertWorkflowTemplate(parsed.context, parsed.value);
  return parsed.context.errors.getErrors().map((e) => e.message);
}

t.test('the GitHub workflow passes GitHub’s own workflow parser', async (t) => {
  const text = await read('.github/workflows/qcrash.yml');
  t.same(await workflowErrors(text), [], 'no parse or schema errors');

  const wf = parseYaml(text);
  t.same(Object.keys(wf.on.workflow_dispatch.inputs).sort(), ['kernel', 'scenarios', 'seed']);
  const shards: number[] = wf.jobs.shard.strategy.matrix.shard;
  t.same(shards, [1, 2, 3], 'a matrix of three shards');
  const runStep = wf.jobs.shard.steps.find((s: { run?: string }) => s.run?.includes('bin/qcrash.js run'));
  t.match(runStep.run, `--shard \${{ matrix.shard }}/${shards.length}`, 'the shard count in --shard is the matrix size');
  t.match(runStep.run, '--out results/shard-${{ matrix.shard }}');
  t.match(runStep.run, '--format none');
  t.match(runStep.run, '--seed "$QCRASH_SEED"', 'every shard gets the same seed');
  t.ok(
    wf.jobs.shard.steps.some((s: { run?: string }) => s.run === 'bash .ci/install'),
    'shards run .ci/install',
  );
  const upload = wf.jobs.shard.steps.find((s: { uses?: string }) => s.uses?.startsWith('actions/upload-artifact@'));
  t.equal(upload.with.path, 'results/shard-${{ matrix.shard }}');
  t.equal(upload.if, 'always()', 'a shard with failing cases still uploads its results');

  t.equal(wf.jobs.merge.needs, 'shard');
  const mergeRun = wf.jobs.merge.steps.find((s: { run?: string }) => s.run?.includes('bin/qcrash.js merge'));
  t.equal(mergeRun.run, 'node bin/qcrash.js merge results/merged results/shard-*');
  const download = wf.jobs.merge.steps.find((s: { uses?: string }) => s.uses?.startsWith('actions/download-artifact@'));
  t.same(download.with, { pattern: 'shard-*', path: 'results' }, 'each shard lands in results/shard-N');
  const junit = wf.jobs.merge.steps.find((s: { uses?: string }) => s.uses?.includes('junit'));
  t.match(junit.uses, /^mikepenz\/action-junit-report@v\d+\.\d+\.\d+$/, 'the JUnit action is pinned to a version');
  t.equal(junit.with.report_paths, 'results/merged/junit.xml');
  t.equal(wf.jobs.merge.permissions.checks, 'write', 'the JUnit action may publish its check run');
});

t.test('GitHub’s parser rejects broken copies of the workflow', async (t) => {
  const text = await read('.github/workflows/qcrash.yml');
  const broken: Array<[string, string, RegExp]> = [
    [
      'no runs-on',
      text.replace(/^ {4}runs-on: ubuntu-24.04\n {4}# \.ci\/install/m, '    # .ci/install'),
      /Required property is missing: runs-on/,
    ],
    ['a bad expression', text.replace('--shard ${{ matrix.shard }}/3', '--shard ${{ matrix.shard ) }}/3'), /Unexpected symbol/],
    ['needs: an unknown job', text.replace('needs: shard', 'needs: shards'), /depends on unknown job 'shards'/],
    ['a misspelt key', text.replace('timeout-minutes: 180', 'timeout-minute: 180'), /Unexpected value 'timeout-minute'/],
    [
      'a dispatch input of an unknown type',
      text.replace('        type: string\n        default: stock', '        type: text\n        default: stock'),
      /Unexpected value 'text'/,
    ],
  ];
  for (const [what, copy, message] of broken) {
    t.not(copy, text, `${what}: the copy differs`);
    const errors = await workflowErrors(copy);
    t.ok(errors.length > 0, `${what}: rejected (${errors[0] ?? 'no error'})`);
    t.match(errors.join('\n'), message, what);
  }
});

// ---------------------------------------------------------------- GitLab CI

const gitlabSchema = JSON.parse(await read('schemas/gitlab-ci/ci.json'));
// Unknown keywords stay errors (strictSchema); Ajv's extra checks on how a schema
// is written (required properties not declared beside them, type unions) are
// off: GitLab writes its schema for plain draft-07 validators.
const gitlabAjv = new Ajv({
  allErrors: true,
  strictSchema: true,
  strictRequired: false,
  strictTypes: false,
  strictTuples: false,
});
// GitLab's schema carries Markdown descriptions for its editor: a keyword with no validation meaning.
gitlabAjv.addKeyword('markdownDescription');
addFormats(gitlabAjv);
const validateGitlab = gitlabAjv.compile(gitlabSchema);

t.test('the GitLab CI file passes GitLab’s CI schema', async (t) => {
  const ci = parseYaml(await read('.gitlab-ci.yml'));
  t.ok(validateGitlab(ci), gitlabAjv.errorsText(validateGitlab.errors));
  t.equal(ci.shard.parallel, 3);
  const run = ci.shard.script.find((l: string) => l.includes('bin/qcrash.js run'));
  t.match(run, '--shard "$CI_NODE_INDEX/$CI_NODE_TOTAL"', 'GitLab’s 1-based node index is qcrash’s shard index');
  t.match(run, '--out "results/shard-$CI_NODE_INDEX"');
  t.match(run, '--seed "$QCRASH_SEED"');
  t.same(ci.shard.artifacts.paths, ['results/shard-$CI_NODE_INDEX/']);
  t.equal(ci.shard.artifacts.when, 'always');
  t.ok(ci.merge.script.includes('node bin/qcrash.js merge results/merged results/shard-*'));
  t.equal(ci.merge.artifacts.reports.junit, 'results/merged/junit.xml');
  t.equal(ci.merge.when, 'always');
});

t.test('GitLab’s CI schema rejects broken copies', async (t) => {
  const ci = parseYaml(await read('.gitlab-ci.yml'));
  const broken: Array<[string, (c: any) => void, RegExp]> = [
    ['parallel as text', (c) => (c.shard.parallel = 'three'), /parallel must be integer/],
    ['more parallel jobs than GitLab allows', (c) => (c.shard.parallel = 500), /parallel must be <= 200/],
    [
      'a misspelt script',
      (c) => ((c.shard.scirpt = c.shard.script), delete c.shard.script),
      /must NOT have additional properties/,
    ],
    ['a JUnit report that is a number', (c) => (c.merge.artifacts.reports.junit = 5), /junit must be string/],
    ['an unknown when', (c) => (c.merge.when = 'sometimes'), /when must be equal to one of the allowed values/],
  ];
  for (const [what, breakIt, message] of broken) {
    const copy = structuredClone(ci);
    breakIt(copy);
    t.notOk(validateGitlab(copy), `${what}: rejected`);
    t.match(gitlabAjv.errorsText(validateGitlab.errors), message, what);
  }
});

t.test('the vendored GitLab schema records where it came from', async (t) => {
  const source = await read('schemas/gitlab-ci/SOURCE.md');
  t.match(source, 'app/assets/javascripts/editor/schema/ci.json');
  t.match(source, 'gitlab-ci-local@4.75.1');
  t.match(source, /sha256 `[0-9a-f]{64}`/);
  t.equal(gitlabSchema.$id, 'https://gitlab.com/.gitlab-ci.yml');
});

// ---------------------------------------------------------------- Kubernetes

type Manifest = Record<string, any>;
async function manifests(file: string): Promise<Manifest[]> {
  const docs = parseAllDocuments(await read(file));
  for (const d of docs) if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
  return docs.map((d) => d.toJS() as Manifest);
}

/** Constructs the kubernetes-models object for a manifest and validates it against the Kubernetes OpenAPI schema. */
function k8sValidate(m: Manifest): void {
  if (m.apiVersion === 'batch/v1' && m.kind === 'Job') new Job(m as any).validate();
  else if (m.apiVersion === 'v1' && m.kind === 'PersistentVolumeClaim') new PersistentVolumeClaim(m as any).validate();
  else throw new Error(`no model for ${m.apiVersion} ${m.kind}`);
}

/** What the kvm overlay's strategic merge patch does to the shard Job: containers and volumes merge by name. */
function withKvmPatch(job: Manifest, patch: Manifest): Manifest {
  const out = structuredClone(job);
  const spec = out.spec.template.spec;
  const p = patch.spec.template.spec;
  spec.nodeSelector = { ...spec.nodeSelector, ...p.nodeSelector };
  for (const pc of p.containers) {
    const c = spec.containers.find((x: Manifest) => x.name === pc.name);
    if (!c) throw new Error(`the kvm patch names container ${pc.name}, which the Job does not have`);
    c.volumeMounts = [...(c.volumeMounts ?? []), ...pc.volumeMounts];
  }
  spec.volumes = [...(spec.volumes ?? []), ...p.volumes];
  return out;
}

function env(container: Manifest, name: string): string {
  const e = container.env.find((x: Manifest) => x.name === name);
  if (!e) throw new Error(`${container.name} has no ${name}`);
  return e.value;
}

function mebibytes(q: string): number {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`unexpected quantity ${q}`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
}

t.test('the Kubernetes manifests pass the Kubernetes OpenAPI schema and agree with each other', async (t) => {
  const kustomization = parseYaml(await read('deploy/kubernetes/kustomization.yaml'));
  const files: string[] = kustomization.resources;
  t.same(files.sort(), ['merge-job.yaml', 'pvc.yaml', 'shard-job.yaml']);
  const all = (await Promise.all(files.map((f) => manifests(`deploy/kubernetes/${f}`)))).flat();
  for (const m of all) t.doesNotThrow(() => k8sValidate(m), `${m.kind} ${m.metadata.name} is valid`);

  const pvc = all.find((m) => m.kind === 'PersistentVolumeClaim')!;
  const shards = all.find((m) => m.metadata.name === 'qcrash-shards')!;
  const merge = all.find((m) => m.metadata.name === 'qcrash-merge')!;
  t.equal(shards.spec.completionMode, 'Indexed');
  const qcrash = shards.spec.template.spec.containers.find((c: Manifest) => c.name === 'qcrash');
  const n = Number(env(qcrash, 'QCRASH_SHARDS'));
  t.equal(shards.spec.completions, n, 'completions = QCRASH_SHARDS');
  t.equal(shards.spec.parallelism, n, 'every shard at once');
  t.match(qcrash.args[0], 'shard=$((JOB_COMPLETION_INDEX + 1))', 'the 0-based completion index becomes the 1-based shard');
  t.match(qcrash.args[0], '--shard "$shard/$QCRASH_SHARDS"');
  t.match(qcrash.args[0], '--out "$out"');
  t.match(qcrash.args[0], '--seed "$QCRASH_SEED"');
  t.equal(
    shards.spec.podFailurePolicy.rules[0].onExitCodes.containerName,
    'qcrash',
    'the failure policy names the real container',
  );
  // Requests hold QCRASH_JOBS qcrash VMs (harness/vm/machine/pool.ts) and the harness.
  const jobs = Number(env(qcrash, 'QCRASH_JOBS'));
  t.ok(
    mebibytes(qcrash.resources.requests.memory) >= jobs * vmMemoryMiB,
    `${qcrash.resources.requests.memory} holds ${jobs} VMs of ${vmMemoryMiB} MiB`,
  );
  t.ok(Number(qcrash.resources.requests.cpu) >= jobs, 'a core per VM');
  // Every pod mounts the same claim, and the merge reads where the shards write.
  for (const job of [shards, merge]) {
    const vols = job.spec.template.spec.volumes;
    t.same(
      vols.map((v: Manifest) => v.persistentVolumeClaim?.claimName),
      [pvc.metadata.name],
      `${job.metadata.name} mounts ${pvc.metadata.name}`,
    );
    for (const c of [...(job.spec.template.spec.initContainers ?? []), ...job.spec.template.spec.containers]) {
      for (const vm of c.volumeMounts)
        t.ok(
          vols.some((v: Manifest) => v.name === vm.name),
          `${c.name} mounts a declared volume (${vm.name})`,
        );
      t.equal(env(c, 'QCRASH_RUN'), env(qcrash, 'QCRASH_RUN'), `${c.name} uses the shards' run folder`);
    }
  }
  const mergeContainer = merge.spec.template.spec.containers[0];
  t.match(mergeContainer.args[0], 'node bin/qcrash.js merge "/data/runs/$QCRASH_RUN/merged" /data/runs/"$QCRASH_RUN"/shard-*');
  t.equal(env(merge.spec.template.spec.initContainers[0], 'QCRASH_SHARDS'), String(n), 'the merge waits for every shard');
  t.equal(
    merge.spec.podFailurePolicy.rules[0].onExitCodes.containerName,
    mergeContainer.name,
    "the merge's failure policy names its container",
  );
  t.same(merge.spec.podFailurePolicy.rules[0].onExitCodes.values, [1, 2], 'failing cases and refused shards are not retried');
  t.ok(
    mergeContainer.args[0].indexOf('rm -rf "/data/runs/$QCRASH_RUN/merged"') < mergeContainer.args[0].indexOf('qcrash.js merge'),
    'a retried merge starts from a clean folder (merge refuses one that holds a run)',
  );

  const kvmKustomization = parseYaml(await read('deploy/kubernetes/kvm/kustomization.yaml'));
  t.same(kvmKustomization.resources, ['..']);
  const patchFile = kvmKustomization.patches[0].path;
  t.ok(existsSync(join(root, 'deploy/kubernetes/kvm', patchFile)));
  const [patch] = await manifests(`deploy/kubernetes/kvm/${patchFile}`);
  t.equal(patch!.metadata.name, kvmKustomization.patches[0].target.name);
  const kvmJob = withKvmPatch(shards, patch!);
  t.doesNotThrow(() => k8sValidate(kvmJob), 'the Job with /dev/kvm is valid');
  const kvmVolume = kvmJob.spec.template.spec.volumes.find((v: Manifest) => v.hostPath);
  t.same(kvmVolume.hostPath, { path: '/dev/kvm', type: 'CharDevice' });
});

t.test('the Kubernetes schema rejects broken copies', async (t) => {
  const [shards] = await manifests('deploy/kubernetes/shard-job.yaml');
  const [pvc] = await manifests('deploy/kubernetes/pvc.yaml');
  const broken: Array<[string, Manifest, (m: Manifest) => void, RegExp]> = [
    [
      'a misspelt completion mode',
      shards!,
      (m) => (m.spec.completionMode = 'Indexd'),
      /completionMode must be equal to one of the allowed values/,
    ],
    ['completions as text', shards!, (m) => (m.spec.completions = 'three'), /completions must be integer/],
    [
      'a container without a name',
      shards!,
      (m) => delete m.spec.template.spec.containers[0].name,
      /must have required property name/,
    ],
    ['a Job without a pod template', shards!, (m) => delete m.spec.template, /must have required property template/],
    [
      'an exit-code rule with an unknown operator',
      shards!,
      (m) => (m.spec.podFailurePolicy.rules[0].onExitCodes.operator = 'Equals'),
      /operator must be equal to one of the allowed values/,
    ],
    [
      'a claim whose access modes are not a list',
      pvc!,
      (m) => (m.spec.accessModes = 'ReadWriteMany'),
      /accessModes must be array/,
    ],
  ];
  for (const [what, original, breakIt, message] of broken) {
    const copy = structuredClone(original);
    breakIt(copy);
    let error = '';
    try {
      k8sValidate(copy);
    } catch (e) {
      error = (e as Error).message;
    }
    t.ok(error, `${what}: rejected`);
    t.match(error, message, what);
  }
});

// ---------------------------------------------------------------- Dockerfile

function dockerfileProblems(text: string): string[] {
  return lintDockerfile(text).map((d) => `${d.range.start.line + 1}: ${d.message}`);
}

t.test('the Dockerfile passes the linter and installs through .ci/install', async (t) => {
  const text = await read('Dockerfile');
  t.same(dockerfileProblems(text), [], 'no diagnostics');
  t.match(text, /^ARG BASE=node:20-bookworm-slim$/m, 'Debian 12 with Node.js 20 by default');
  t.match(text, /^RUN bash \.ci\/install/m);
  t.match(text, /^RUN node bin\/qcrash\.js doctor$/m, 'a missing tool fails the build');
  const ignored = (await read('.dockerignore')).split('\n');
  for (const p of ['.git', 'node_modules', 'results']) t.ok(ignored.includes(p), `.dockerignore leaves out ${p}`);
});

t.test('the Dockerfile linter rejects broken copies', async (t) => {
  const text = await read('Dockerfile');
  const broken: Array<[string, string, RegExp]> = [
    [
      'an unknown instruction',
      text.replace('RUN node bin/qcrash.js doctor', 'RUNN node bin/qcrash.js doctor'),
      /Unknown instruction: RUNN/,
    ],
    ['no FROM before the first build step', text.replace('FROM ${BASE}\n', ''), /FROM/],
    ['a WORKDIR without a path', text.replace('WORKDIR /opt/qcrash', 'WORKDIR'), /Instruction has no arguments/],
    ['a COPY without a destination', text.replace('COPY . .', 'COPY .'), /COPY requires at least two arguments/],
    [
      'a second CMD',
      text.replace('CMD ["run", "--help"]', 'CMD ["run", "--help"]\nCMD ["doctor"]'),
      /There can only be one CMD instruction/,
    ],
  ];
  for (const [what, copy, message] of broken) {
    t.not(copy, text, `${what}: the copy differs`);
    const problems = dockerfileProblems(copy);
    t.ok(problems.length > 0, `${what}: rejected (${problems[0] ?? 'no diagnostics'})`);
    t.match(problems.join('\n'), message, what);
  }
});

// ---------------------------------------------------------------- the commands the engines run

// Each qcrash command line of the engine files, as the engine's shell would
// see it (variables set as a CI run would, quotes removed), parsed by
// qcrash's own command definitions with the actions replaced: an option the
// CLI does not have, or a value it refuses (--shard 0/3), fails here rather
// than on the first CI run.
const { Command } = await import('commander');
const { registerRun } = await import('../../harness/cli/run-command.ts');
const { registerMerge } = await import('../../harness/cli/merge-command.ts');

const engineVars: Record<string, string> = {
  QCRASH_SCENARIOS: 'scenarios',
  QCRASH_KERNEL: 'stock',
  QCRASH_SEED: '42',
  QCRASH_RUN: 'sweep-1',
  QCRASH_SHARDS: '3',
  QCRASH_JOBS: '2',
  CI_NODE_INDEX: '2',
  CI_NODE_TOTAL: '3',
  shard: '2',
  out: '/data/runs/sweep-1/shard-2',
  '{{ matrix.shard }}': '2',
};

/** The qcrash invocations in a shell script: `node bin/qcrash.js ...` up to `||`, `;` or the end, continuation lines joined. */
function qcrashInvocations(script: string): string[][] {
  // GitHub expressions are replaced before the shell sees the script.
  const text = script.replace(/\\\n\s*/g, ' ').replace(/\$\{\{\s*matrix\.shard\s*\}\}/g, engineVars['{{ matrix.shard }}']!);
  const out: string[][] = [];
  for (const m of text.matchAll(/node bin\/qcrash\.js ([^\n|;]*)/g)) {
    const words: string[] = [];
    for (const w of m[1]!.matchAll(/(?:"[^"]*"|[^\s"]+)+/g)) {
      words.push(
        w[0]
          .replace(/\$(\w+)|\$\{(\w+)\}/g, (_, a, b) => {
            const v = engineVars[a ?? b];
            if (v === undefined) throw new Error(`unknown variable $${a ?? b} in: ${m[0]}`);
            return v;
          })
          .replace(/"/g, ''),
      );
    }
    out.push(words.flatMap((w) => (w === 'scenarios' ? [w] : w.split(/\s+/).filter(Boolean))));
  }
  return out;
}

async function parseQcrash(argv: string[]): Promise<{ command: string; opts: Record<string, unknown> }> {
  const program = new Command('qcrash').exitOverride();
  registerRun(program);
  registerMerge(program);
  let seen: { command: string; opts: Record<string, unknown> } | undefined;
  for (const c of program.commands) {
    c.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    c.action(function (this: InstanceType<typeof Command>) {
      seen = { command: this.name(), opts: this.opts() };
    });
  }
  await program.parseAsync(argv, { from: 'user' });
  if (!seen) throw new Error(`no command ran for: ${argv.join(' ')}`);
  return seen;
}

t.test('every qcrash command the engine files run is one the CLI accepts', async (t) => {
  const wf = parseYaml(await read('.github/workflows/qcrash.yml'));
  const ci = parseYaml(await read('.gitlab-ci.yml'));
  const k8s = [
    ...(await manifests('deploy/kubernetes/shard-job.yaml')),
    ...(await manifests('deploy/kubernetes/merge-job.yaml')),
  ];
  const scripts: Array<[string, string]> = [
    ...Object.entries(wf.jobs).flatMap(([job, j]: [string, any]) =>
      j.steps.filter((s: any) => s.run).map((s: any) => [`GitHub ${job}`, s.run] as [string, string]),
    ),
    ...['shard', 'merge'].flatMap((job) => ci[job].script.map((l: string) => [`GitLab ${job}`, l] as [string, string])),
    ...k8s.flatMap((m) =>
      m.spec.template.spec.containers.map((c: Manifest) => [`Kubernetes ${m.metadata.name}`, c.args[0]] as [string, string]),
    ),
  ];
  const seen: string[] = [];
  for (const [where, script] of scripts) {
    for (const argv of qcrashInvocations(script)) {
      const r = await parseQcrash(argv).catch((e: Error) => e);
      t.notOk(r instanceof Error, `${where}: qcrash ${argv.join(' ')}${r instanceof Error ? `: ${r.message}` : ''}`);
      if (r instanceof Error) continue;
      seen.push(`${where}: ${r.command}`);
      if (r.command === 'run' && !r.opts.resume)
        t.same(r.opts.shard, { index: 2, total: 3 }, `${where}: --shard parses to shard 2 of 3`);
    }
  }
  t.same(
    seen.sort(),
    [
      'GitHub merge: merge',
      'GitHub shard: run',
      'GitLab merge: merge',
      'GitLab shard: run',
      'Kubernetes qcrash-merge: merge',
      'Kubernetes qcrash-shards: run',
      'Kubernetes qcrash-shards: run',
    ],
    "a shard run and a merge per engine (and the Kubernetes retry's --resume)",
  );
  // The check can fail: an option qcrash does not have, and a shard index from 0.
  await t.rejects(parseQcrash(['run', 'scenarios', '--shards', '2/3']), /unknown option '--shards'/);
  await t.rejects(parseQcrash(['run', 'scenarios', '--shard', '0/3']), /counts from 1/);
});
