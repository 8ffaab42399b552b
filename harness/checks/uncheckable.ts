import type { Finding } from '../findings/finding.ts';
import type { E2fsckCannotCheckError } from '../image/e2fsck.ts';

/**
 * An image e2fsck cannot even check, as a finding: on a crash state that is
 * the worst corruption there is, not an error of the harness.
 */
export function cannotCheckFinding(e: E2fsckCannotCheckError, recovery: NonNullable<Finding['recovery']>): Finding {
  return {
    class: 'corruption',
    source: 'e2fsck',
    code: 'e2fsck-cannot-check',
    name: 'e2fsck-cannot-check',
    message: `e2fsck could not check the image recovered by ${recovery}`,
    recovery,
    detail: e.message.slice(0, 4000),
  };
}
