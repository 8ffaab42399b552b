import type { Step } from '../../harness/scenario/model.ts';

/**
 * The workload the write-log tests record on the small-4k recipe, and the
 * one the committed fixture log was recorded with (test/fixtures/writelog/README.md):
 * a migration made durable by sync, two more made durable by fsync, a new
 * file written and fsynced, and the umount. commit=30 keeps jbd2's timer
 * out of the way, so every commit is one a step asked for.
 */
export const recordedSteps: Step[] = [
  { kind: 'mount', name: 'mount', options: ['commit=30'] },
  { kind: 'migrate', name: 'migrate', paths: ['/shapes/dind-first'], recursive: false },
  { kind: 'sync', name: 'sync' },
  { kind: 'migrate', name: 'migrate-ind', paths: ['/shapes/ind-13', '/shapes/fragmented'], recursive: false },
  { kind: 'fsync', name: 'fsync-ind', path: '/shapes/ind-13' },
  { kind: 'write', name: 'write', path: '/new-file', size: 20000, offset: 0, append: false, seed: 3 },
  { kind: 'fsync', name: 'fsync-new', path: '/new-file' },
  { kind: 'umount', name: 'umount' },
];
