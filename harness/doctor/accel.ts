import { access, constants } from 'node:fs/promises';

export type Accel = 'kvm' | 'tcg';

/** KVM when /dev/kvm is usable (read-write), TCG otherwise; QCRASH_ACCEL=tcg|kvm forces one. */
export async function detectAccel(): Promise<{ accel: Accel; reason: string }> {
  const forced = process.env.QCRASH_ACCEL;
  if (forced === 'tcg' || forced === 'kvm') return { accel: forced, reason: `QCRASH_ACCEL=${forced}` };
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
    return { accel: 'kvm', reason: '/dev/kvm is usable' };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { accel: 'tcg', reason: code === 'ENOENT' ? 'no /dev/kvm: QEMU runs under TCG (slower)' : `/dev/kvm not usable (${code}): TCG` };
  }
}
