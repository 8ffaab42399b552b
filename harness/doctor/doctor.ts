import { readdir } from 'node:fs/promises';
import { run } from '../util/exec.ts';
import { findProgram, hostTools, type HostTool } from '../util/tools.ts';
import { access } from 'node:fs/promises';
import { detectAccel } from '../vm/machine/accel.ts';
import { layoutToolHeaders } from '../image/layout-tool.ts';
import { kernelLines, type KernelLine } from '../kernel/lines.ts';
import { newestStockImage } from '../kernel/stock.ts';

/** One line of `qcrash doctor`: a program or package, whether it is there, its version, and how to get it. */
export interface DoctorCheck {
  name: string;
  debianPackage: string;
  ok: boolean;
  version?: string;
  path?: string;
  /** Needed for every run, only for building patched kernels, or only for the browser tests of the HTML reports. */
  neededFor: 'run' | 'kernel-build' | 'browser-tests';
  note?: string;
}

const versionArgs: Partial<Record<HostTool, string[]>> = {
  'qemu-system-x86_64': ['--version'],
  'qemu-img': ['--version'],
  e2fsck: ['-V'],
  debugfs: ['-V'],
  'mkfs.ext4': ['-V'],
  tune2fs: [],
  busybox: [],
  cpio: ['--version'],
  setpriv: ['--version'],
  git: ['--version'],
  make: ['--version'],
  gcc: ['--version'],
  bc: ['--version'],
  flex: ['--version'],
  bison: ['--version'],
  ccache: ['--version'],
};

const runTools: HostTool[] = [
  'qemu-system-x86_64',
  'qemu-img',
  'e2fsck',
  'debugfs',
  'mkfs.ext4',
  'tune2fs',
  'dumpe2fs',
  'busybox',
  'cpio',
  'setpriv',
];
const buildTools: HostTool[] = ['git', 'make', 'gcc', 'bc', 'flex', 'bison', 'ccache'];

/** Every Debian package the project uses: `doctor --install` and .ci/run install this list. */
export const debianPackages = [
  'qemu-system-x86',
  'qemu-utils',
  'e2fsprogs',
  'busybox-static',
  'cpio',
  'util-linux',
  'linux-image-cloud-amd64',
  'linux-source-6.1',
  'linux-image-6.12-cloud-amd64',
  'linux-source-6.12',
  'build-essential',
  'bc',
  'flex',
  'bison',
  'libelf-dev',
  'libssl-dev',
  'ccache',
  'git',
  'xz-utils',
  'kmod',
  'perl',
  'make',
  'gcc',
  'chromium',
  'python3',
  // The tests check KCIDB documents with python-jsonschema too, as kcidb-io itself does.
  'python3-jsonschema',
  'libext2fs-dev',
  'comerr-dev',
];

function firstVersionLine(text: string): string | undefined {
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => /\d+\.\d+/.test(l));
  return line?.slice(0, 100);
}

async function checkTool(t: HostTool, neededFor: DoctorCheck['neededFor']): Promise<DoctorCheck> {
  const path = await findProgram(t);
  const base: DoctorCheck = { name: t, debianPackage: hostTools[t], ok: Boolean(path), neededFor };
  if (!path) return base;
  const r = await run(path, versionArgs[t] ?? ['--version'], { timeoutMs: 10_000 });
  const version = firstVersionLine(`${r.stdout}\n${r.stderr}`);
  if (t === 'busybox') {
    // Only the static build works inside the guest without its libraries.
    const l = await run('ldd', [path]);
    const isStatic = /not a dynamic executable|statically linked/.test(l.stdout + l.stderr);
    if (!isStatic) return { ...base, ok: false, path, version, note: 'busybox is dynamically linked: install busybox-static' };
  }
  return { ...base, path, ...(version ? { version } : {}) };
}

/** A line's stock kernel: its newest /boot/vmlinuz of that series and the modules its initramfs needs. */
async function checkStockKernel(line: KernelLine): Promise<DoctorCheck> {
  const base: DoctorCheck = {
    name: `stock ${line.name} kernel (--kernel ${line.stockSpec})`,
    debianPackage: line.imagePackage,
    ok: false,
    neededFor: 'run',
  };
  const newest = await newestStockImage(line);
  if (!newest) return base;
  const release = newest.slice('vmlinuz-'.length);
  const mods = await readdir(`/lib/modules/${release}`).catch(() => undefined);
  if (!mods) return { ...base, version: release, note: `/lib/modules/${release} missing: reinstall linux-image-${release}` };
  return { ...base, ok: true, version: release, path: `/boot/${newest}` };
}

/** Recipes with a physical layout compile qcrash-layout against libext2fs at build time. */
async function checkLayoutHeaders(): Promise<DoctorCheck[]> {
  return Promise.all(
    layoutToolHeaders.map(async (h) => {
      const ok = await access(h.header).then(
        () => true,
        () => false,
      );
      return {
        name: `${h.header.replace('/usr/include/', '')} (layout recipes)`,
        debianPackage: h.debianPackage,
        ok,
        neededFor: 'run' as const,
        ...(ok ? { path: h.header } : {}),
      };
    }),
  );
}

async function checkKernelSource(line: KernelLine): Promise<DoctorCheck> {
  const base: DoctorCheck = {
    name: `${line.sourcePackage} tarball (kernel build --line ${line.name})`,
    debianPackage: line.sourcePackage,
    ok: false,
    neededFor: 'kernel-build',
  };
  const ok = await access(line.tarball).then(
    () => true,
    () => false,
  );
  return ok ? { ...base, ok: true, path: line.tarball } : base;
}

/** Headless Chromium, driven by playwright-core, renders the HTML reports in the tests; runs never need it. */
async function checkChromium(): Promise<DoctorCheck> {
  const base: DoctorCheck = {
    name: 'chromium (HTML report tests)',
    debianPackage: 'chromium',
    ok: false,
    neededFor: 'browser-tests',
  };
  const path = await findProgram('chromium');
  if (!path) return base;
  const r = await run(path, ['--version'], { timeoutMs: 20_000 });
  const version = firstVersionLine(r.stdout);
  return { ...base, ok: true, path, ...(version ? { version } : {}) };
}

export async function runDoctor(): Promise<{ checks: DoctorCheck[]; accel: Awaited<ReturnType<typeof detectAccel>> }> {
  const checks = await Promise.all([
    ...runTools.map((t) => checkTool(t, 'run')),
    ...kernelLines.map(checkStockKernel),
    ...(await checkLayoutHeaders()).map((c) => Promise.resolve(c)),
    ...buildTools.map((t) => checkTool(t, 'kernel-build')),
    ...kernelLines.map(checkKernelSource),
    checkChromium(),
  ]);
  return { checks, accel: await detectAccel() };
}

export function formatDoctor(r: Awaited<ReturnType<typeof runDoctor>>): string {
  const lines: string[] = [];
  const titles = {
    run: 'Needed for every run:',
    'kernel-build': 'Needed to build patched kernels (validate, bisect, kernel build):',
    'browser-tests': 'Needed only by the tests of the HTML reports (npm test):',
  } as const;
  for (const group of ['run', 'kernel-build', 'browser-tests'] as const) {
    lines.push(titles[group]);
    for (const c of r.checks.filter((x) => x.neededFor === group)) {
      const status = c.ok ? 'ok     ' : 'MISSING';
      const detail = c.ok ? (c.version ?? c.path ?? '') : `apt-get install ${c.debianPackage}`;
      lines.push(`  ${status} ${c.name.padEnd(38)} ${detail}${c.note ? `  (${c.note})` : ''}`);
    }
  }
  lines.push(`Accelerator: ${r.accel.accel} (${r.accel.reason})`);
  const missing = r.checks.filter((c) => !c.ok);
  if (missing.length) {
    const pkgs = [...new Set(missing.map((c) => c.debianPackage))];
    lines.push(`Missing: ${missing.length}. Fix with: apt-get install ${pkgs.join(' ')}  (or: qcrash doctor --install)`);
  } else lines.push('Everything qcrash needs is installed.');
  return lines.join('\n');
}

/** apt-get update + install of the project's package list; only as root. */
export async function installPackages(packages: readonly string[] = debianPackages): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error(`qcrash doctor --install needs root. Run: sudo apt-get install ${packages.join(' ')}`);
  }
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-q'],
    ['install', '-y', '-q', '--no-install-recommends', ...packages],
  ]) {
    const r = await run('apt-get', args, { env, timeoutMs: 30 * 60_000 });
    process.stderr.write(r.stdout.split('\n').slice(-5).join('\n'));
    if (r.failed)
      throw new Error(`apt-get ${args[0]} failed (exit ${r.exitCode}):\n${r.stderr.trim().split('\n').slice(-10).join('\n')}`);
  }
}
