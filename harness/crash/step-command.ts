import type { Step } from '../scenario/model.ts';

/** The agent command and arguments for a step (vm-images/guest/qcrash-agent). */
export function stepCommand(step: Step, caseSeed: number): [string, Array<string | number>] {
  switch (step.kind) {
    case 'mount':
      return ['mount', [step.options.length ? step.options.join(',') : 'defaults']];
    case 'umount':
    case 'sync':
    case 'drop-caches':
      return [step.kind, []];
    case 'migrate':
      return ['migrate', [step.recursive ? '1' : '0', ...step.paths]];
    case 'write':
      return ['write', [step.path, step.offset, step.size, step.seed, step.append ? 1 : 0]];
    case 'fsync':
      return ['fsync', [step.path]];
    case 'sync-loop':
      return ['sync-loop', [step.action]];
    case 'writer':
      // Writer content varies per case: it races the migration and is never checked byte for byte.
      return ['writer', [step.name.replace(/-(start|stop)$/, ''), step.mode, step.path, step.size, step.action, caseSeed]];
    case 'sleep':
      return ['sleep', [step.ms]];
  }
}
