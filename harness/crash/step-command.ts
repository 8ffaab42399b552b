import type { Step } from '../scenario/model.ts';
import type { AgentArg } from '../vm/agent/protocol.ts';

/**
 * The agent command for a scenario step. Writers' content varies per case
 * (the case seed), `write` steps carry their own seed so the host can
 * recompute the bytes (harness/guest/content.ts).
 */
export function stepCommand(step: Step, caseSeed: number): [string, AgentArg[]] {
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
      // The agent passes the third value through to qcrash-io: a size, or for mmap-holes the pace; then a rewriter's offset, when not 0.
      return [
        'writer',
        [
          step.name.replace(/-(start|stop)$/, ''),
          step.mode,
          step.path,
          step.mode === 'mmap-holes' ? step.paceUs : step.size,
          step.action,
          caseSeed,
          ...(step.offset ? [step.offset] : []),
        ],
      ];
    case 'sleep':
      return ['sleep', [step.ms]];
    case 'flush-loop':
      return ['flush-loop', [step.action, step.deviceFlush ? 'fsync' : 'range', step.pauseMs * 1000]];
    case 'sysctl':
      return ['sysctl', Object.entries(step.settings).flat()];
  }
}
