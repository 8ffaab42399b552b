import { basename } from 'node:path';
import { sha256 } from '../util/hash.ts';
import type { CaseResult, CaseStatus } from '../results/case.ts';
import type { RunSummary } from '../results/run.ts';

/**
 * A run as KCIDB report data (schema v5.3, kernelci/kcidb-io), so a
 * KernelCI-style dashboard can ingest it: one checkout (the kernel source
 * and its patches), one build (the kernel qcrash booted), one test per case.
 * KCIDB merges objects by id, so the checkout and build ids are derived from
 * the kernel's identity (the same kernel from two runs is one build), and
 * test ids from the run and case ids.
 */

export const kcidbOrigin = 'qcrash';
export const kcidbVersion = { major: 5, minor: 3 } as const;

export type KcidbStatus = 'FAIL' | 'ERROR' | 'MISS' | 'PASS' | 'DONE' | 'SKIP';

export interface KcidbCheckout {
  id: string;
  origin: string;
  comment?: string;
  git_commit_hash?: string;
  patchset_hash?: string;
  valid?: boolean;
  misc?: Record<string, unknown>;
}

export interface KcidbBuild {
  id: string;
  checkout_id: string;
  origin: string;
  comment?: string;
  architecture?: string;
  config_name?: string;
  status?: KcidbStatus;
  misc?: Record<string, unknown>;
}

export interface KcidbTest {
  id: string;
  build_id: string;
  origin: string;
  path: string;
  status: KcidbStatus;
  comment?: string;
  duration?: number;
  log_excerpt?: string;
  environment?: { comment?: string; misc?: Record<string, unknown> };
  misc?: Record<string, unknown>;
}

export interface KcidbDocument {
  version: { major: number; minor: number };
  checkouts: KcidbCheckout[];
  builds: KcidbBuild[];
  tests: KcidbTest[];
}

/**
 * KCIDB's statuses in its own words: FAIL, the test reported the code faulty;
 * ERROR, the test did not complete; MISS, the test did not run because of
 * the harness. A crash point that never fired means the crash state under
 * test was never produced: nothing about the kernel was checked there, so it
 * is MISS, never PASS (qcrash counts it as lost coverage).
 */
export function kcidbStatus(status: CaseStatus | string): KcidbStatus {
  switch (status) {
    case 'pass':
      return 'PASS';
    case 'fail':
      return 'FAIL';
    case 'error':
      return 'ERROR';
    case 'not-reached':
      return 'MISS';
    default:
      // A status this code does not know (a newer summary): not a pass.
      return 'MISS';
  }
}

/** Test path segments are [a-zA-Z0-9_-]+ (KCIDB's path pattern): anything else becomes "_". */
function pathSegment(s: string): string {
  const seg = s.replace(/[^A-Za-z0-9_-]/g, '_');
  return seg || '_';
}

export function kcidbTestPath(c: Pick<CaseResult, 'scenario' | 'pointLabel'>): string {
  return `ext4.migrate.${pathSegment(c.scenario)}.${pathSegment(c.pointLabel)}`;
}

/** KCIDB strings may not hold NUL (their pattern is ^[^\0]*$). */
function text(s: string): string {
  return s.replace(/\0/g, '');
}

const maxExcerpt = 16384;
function excerpt(s: string): string {
  const t = text(s);
  return t.length <= maxExcerpt ? t : `${t.slice(0, maxExcerpt - 20)}\n[... cut by qcrash]`;
}

/** sha256 over newline-terminated sha256s of each patch, in order: KCIDB's patchset_hash ("" for no patches). */
export function patchsetHash(patchSha256s: readonly string[]): string {
  return patchSha256s.length ? sha256(patchSha256s.map((h) => `${h}\n`).join('')) : '';
}

interface Provenance {
  source?: string;
  base?: string;
  patches: Array<{ subject: string; sha256: string; file?: string }>;
  configs: string[];
  configHash?: string;
  package?: string;
}

/** The provenance record is free-form (harness/kernel/build.ts and stock.ts write it): read only what has the expected shape. */
function readProvenance(p: Record<string, unknown> | undefined): Provenance {
  const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
  const patches = Array.isArray(p?.patches)
    ? (p.patches as unknown[]).flatMap((x) => {
        const o = x as Record<string, unknown>;
        const sha = str(o?.sha256);
        return sha && /^[0-9a-f]{64}$/.test(sha)
          ? [{ subject: str(o.subject) ?? '', sha256: sha, ...(str(o.file) ? { file: basename(str(o.file)!) } : {}) }]
          : [];
      })
    : [];
  const configs = Array.isArray(p?.configs) ? (p.configs as unknown[]).flatMap((c) => (str(c) ? [basename(str(c)!)] : [])) : [];
  return {
    source: str(p?.source),
    base: str(p?.base),
    patches,
    configs,
    configHash: str(p?.configHash),
    package: str(p?.package),
  };
}

function checkoutFor(s: RunSummary, p: Provenance): KcidbCheckout {
  const k = s.kernel;
  if (k.kind === 'built' && p.base) {
    const ps = patchsetHash(p.patches.map((x) => x.sha256));
    // A tree source is described "<path>@<sha12>" and its base is a real
    // commit of that tree; a tarball's base is the commit qcrash made of the
    // unpacked tarball, meaningless elsewhere, so it is not called a git commit.
    const fromGitTree = /@[0-9a-f]{12}$/.test(p.source ?? '') && /^[0-9a-f]{40}$/.test(p.base);
    const baseLabel = fromGitTree ? p.base : `${basename(p.source ?? 'source')}@${p.base.slice(0, 12)}`;
    return {
      id: `${kcidbOrigin}:${baseLabel}${ps ? `+${ps}` : ''}`,
      origin: kcidbOrigin,
      comment: text(
        `${p.source ?? 'kernel source'}${p.patches.length ? ` + ${p.patches.length} patch(es): ${p.patches.map((x) => x.subject).join('; ')}` : ''}`,
      ),
      ...(fromGitTree ? { git_commit_hash: p.base } : {}),
      patchset_hash: ps,
      valid: true,
      misc: { source: p.source, base: p.base, patches: p.patches },
    };
  }
  if (k.kind === 'stock') {
    const pkg = p.package ?? 'linux-image';
    return {
      id: `${kcidbOrigin}:debian/${pkg}=${k.release}`,
      origin: kcidbOrigin,
      comment: text(`Debian ${pkg} ${k.release}`),
      valid: true,
      misc: { package: pkg, release: k.release },
    };
  }
  // A bzImage given by path: all that is known is the file qcrash booted.
  return {
    id: `${kcidbOrigin}:kernel/${k.id}`,
    origin: kcidbOrigin,
    comment: text(`kernel ${k.id} (${k.release})`),
    valid: true,
    misc: { kind: k.kind, release: k.release },
  };
}

function buildFor(s: RunSummary, p: Provenance, checkoutId: string): KcidbBuild {
  const k = s.kernel;
  return {
    id: `${kcidbOrigin}:${k.id}`,
    checkout_id: checkoutId,
    origin: kcidbOrigin,
    comment: text(`${k.release} (${k.kind})`),
    architecture: 'x86_64',
    ...(p.configs.length
      ? { config_name: text(p.configs.join('+')) }
      : k.kind === 'stock'
        ? { config_name: 'debian-cloud-amd64' }
        : {}),
    // The kernel booted and ran the cases: that is all a build status can say here.
    status: 'PASS',
    misc: { kernel_id: k.id, release: k.release, kind: k.kind, ...(p.configHash ? { config_hash: p.configHash } : {}) },
  };
}

function caseExcerpt(c: CaseResult): string | undefined {
  if (c.status === 'pass') return undefined;
  const lines: string[] = [];
  if (c.error) lines.push(c.error);
  for (const f of c.failing)
    lines.push(
      `${f.class} ${f.code} ${f.name}${f.recovery ? ` [${f.recovery}]` : ''}: ${f.message}${f.detail ? `\n${f.detail}` : ''}`,
    );
  return lines.length ? excerpt(lines.join('\n')) : undefined;
}

function testFor(s: RunSummary, c: CaseResult, buildId: string): KcidbTest {
  const log = caseExcerpt(c);
  return {
    id: `${kcidbOrigin}:${s.runId}/${c.id}`,
    build_id: buildId,
    origin: kcidbOrigin,
    path: kcidbTestPath(c),
    status: kcidbStatus(c.status),
    comment: text(c.id),
    duration: Math.max(0, c.durationMs) / 1000,
    ...(log ? { log_excerpt: log } : {}),
    environment: {
      comment: text(`QEMU ${s.versions.qemu} (${s.accel}) on ${s.host}`),
      misc: { host: s.host, accel: s.accel, qemu: s.versions.qemu, e2fsprogs: s.versions.e2fsprogs, node: s.versions.node },
    },
    misc: {
      run_id: s.runId,
      case_id: c.id,
      scenario: c.scenario,
      suite: c.suite,
      point: c.pointLabel,
      repetition: c.repetition,
      seed: c.seed,
      qcrash_status: c.status,
      findings: c.findings.length,
      failing: c.failing.map((f) => ({
        class: f.class,
        code: f.code,
        name: f.name,
        ...(f.recovery ? { recovery: f.recovery } : {}),
      })),
      ...(c.fired ? { fired: c.fired.kind } : {}),
    },
  };
}

export function kcidbDocument(s: RunSummary): KcidbDocument {
  const p = readProvenance(s.kernel.provenance);
  const checkout = checkoutFor(s, p);
  const build = buildFor(s, p, checkout.id);
  return {
    version: { ...kcidbVersion },
    checkouts: [checkout],
    builds: [build],
    tests: s.cases.map((c) => testFor(s, c, build.id)),
  };
}
