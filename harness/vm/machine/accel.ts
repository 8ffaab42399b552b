import { access, constants, readFile, readdir, stat, mkdir, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { run } from '../../util/exec.ts';
import { cacheDir } from '../../util/paths.ts';
import { findProgram } from '../../util/tools.ts';
import { bareMachineArgs } from './bare-machine.ts';

export type Accel = 'kvm' | 'tcg';

/**
 * KVM when /dev/kvm exists AND a kernel actually boots on it, TCG otherwise.
 * Seen here: /dev/kvm opens, but a guest hangs in early boot (nested
 * virtualisation without the needed MSRs), so the device alone proves
 * nothing. The probe result is cached per host kernel and QEMU binary.
 * QCRASH_ACCEL=tcg|kvm forces one.
 */
export async function detectAccel(): Promise<{ accel: Accel; reason: string }> {
  const forced = process.env.QCRASH_ACCEL;
  if (forced === 'tcg' || forced === 'kvm') return { accel: forced, reason: `QCRASH_ACCEL=${forced}` };
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      accel: 'tcg',
      reason: code === 'ENOENT' ? 'no /dev/kvm: QEMU runs under TCG (slower)' : `/dev/kvm not usable (${code}): TCG`,
    };
  }
  return probeKvm();
}

let memo: Promise<{ accel: Accel; reason: string }> | undefined;

function probeKvm(): Promise<{ accel: Accel; reason: string }> {
  memo ??= (async () => {
    const qemu = await findProgram('qemu-system-x86_64');
    const kernel = (await readdir('/boot').catch(() => [] as string[]))
      .filter((f) => /^vmlinuz-/.test(f))
      .sort()
      .at(-1);
    if (!qemu || !kernel) return { accel: 'tcg' as Accel, reason: 'cannot probe KVM (no QEMU or no kernel in /boot): TCG' };
    const key = `${release()}-${(await stat(qemu)).mtimeMs}-${kernel}`.replace(/[^A-Za-z0-9._-]/g, '_');
    const file = join(cacheDir('accel'), `${key}.json`);
    const cached = await readFile(file, 'utf8').then(
      (t) => JSON.parse(t) as { accel: Accel; reason: string },
      () => undefined,
    );
    if (cached) return cached;
    // Boot to the kernel's "no init" panic: under working KVM that takes about a second.
    const r = await run(
      qemu,
      [
        '-machine',
        'q35,accel=kvm',
        '-m',
        '128',
        ...bareMachineArgs,
        '-kernel',
        join('/boot', kernel),
        '-append',
        'console=ttyS0 panic=-1 rdinit=/qcrash-no-such-init loglevel=3',
        '-serial',
        'stdio',
      ],
      { timeoutMs: 15_000 },
    );
    const ok = /Kernel panic|No working init/.test(r.stdout);
    const result = ok
      ? { accel: 'kvm' as Accel, reason: '/dev/kvm works (probe booted a kernel)' }
      : { accel: 'tcg' as Accel, reason: '/dev/kvm exists but a probe kernel did not boot on it: TCG' };
    await mkdir(cacheDir('accel'), { recursive: true });
    await writeFile(file, JSON.stringify(result));
    return result;
  })();
  return memo;
}
