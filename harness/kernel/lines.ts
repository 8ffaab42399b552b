import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../util/errors.ts';
import { kernelConfigsDir } from '../util/paths.ts';

/**
 * A kernel line qcrash knows: Debian's stock cloud kernel of that series and
 * the linux-source tarball patched kernels are built from. 6.1 is the
 * embedded default (`--kernel stock`); 6.12 is the LTS line Debian 12 also
 * ships (`--kernel stock-6.12`).
 */
export interface KernelLine {
  /** "6.1", "6.12": the series, as users write it. */
  name: string;
  /** The --kernel spec of its stock kernel. */
  stockSpec: string;
  /** Debian package of the stock kernel (what .ci/install and doctor install). */
  imagePackage: string;
  /** Debian package of the source tarball. */
  sourcePackage: string;
  tarball: string;
  /** uname -r of this line's stock kernels (the newest installed one is used). */
  release: RegExp;
  /**
   * Kernel command line arguments this line's guest needs on top of the
   * common ones (harness/vm/machine/argv.ts; `nokaslr` is common: both lines
   * honour it, so symbols read once from the guest hold for every boot).
   */
  cmdline: readonly string[];
}

export const kernelLines: readonly KernelLine[] = [
  {
    name: '6.1',
    stockSpec: 'stock',
    imagePackage: 'linux-image-cloud-amd64',
    sourcePackage: 'linux-source-6.1',
    tarball: '/usr/src/linux-source-6.1.tar.xz',
    release: /^6\.1\.\d+-\d+-cloud-amd64$/,
    cmdline: [],
  },
  {
    name: '6.12',
    stockSpec: 'stock-6.12',
    imagePackage: 'linux-image-6.12-cloud-amd64',
    sourcePackage: 'linux-source-6.12',
    tarball: '/usr/src/linux-source-6.12.tar.xz',
    release: /^6\.12\.\d+\+deb\d+-cloud-amd64$/,
    cmdline: [],
  },
];

export const defaultLine = kernelLines[0]!;

/** A line by its name ("6.12"), or a ConfigError naming the known ones. */
export function kernelLine(name: string, what = '--line'): KernelLine {
  const l = kernelLines.find((x) => x.name === name);
  if (!l) throw new ConfigError(`${what} ${name}: unknown kernel line (known: ${kernelLines.map((x) => x.name).join(', ')})`);
  return l;
}

/** The line of a stock spec: "stock" (6.1), "stock-6.12" or "stock:6.12"; undefined for any other spec. */
export function stockLineOf(spec: string): KernelLine | undefined {
  if (spec === 'stock') return defaultLine;
  const m = /^stock[-:](.+)$/.exec(spec);
  return m ? kernelLine(m[1]!, `--kernel ${spec}:`) : undefined;
}

/** The line of a kernel release string ("6.12.118+deb12-cloud-amd64", "6.1.158"), if it is one qcrash knows. */
export function lineOfRelease(release: string): KernelLine | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? kernelLines.find((l) => l.name === `${m[1]}.${m[2]}`) : undefined;
}

/**
 * A config fragment by name for a line: kernels/configs/<line>/<name>.config
 * when the line needs its own, else the shared kernels/configs/<name>.config.
 */
export async function fragmentFor(name: string, line: KernelLine): Promise<string> {
  const own = join(kernelConfigsDir, line.name, `${name}.config`);
  return (await access(own).then(
    () => true,
    () => false,
  ))
    ? own
    : join(kernelConfigsDir, `${name}.config`);
}

/** Several kernels in one option: "stock,stock-6.12" (empty parts dropped, order kept, duplicates refused). */
export function splitKernelList(spec: string, what = '--kernel'): string[] {
  const parts = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!parts.length) throw new ConfigError(`${what} is empty`);
  const seen = new Set<string>();
  for (const p of parts) {
    const key = stockLineOf(p)?.stockSpec ?? p;
    if (seen.has(key)) throw new ConfigError(`${what} ${spec}: ${p} is given twice`);
    seen.add(key);
  }
  return parts;
}
