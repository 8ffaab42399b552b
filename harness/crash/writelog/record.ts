import { statSync } from 'node:fs';
import type { Step, StepKind } from '../../scenario/model.ts';
import type { Machine } from '../../vm/machine/machine.ts';
import { InfraError } from '../../util/errors.ts';
import { stepCommand } from '../step-command.ts';
import type { StepRecord } from '../expectations.ts';
import type { WriteLog } from './format.ts';

/**
 * One step of a recorded workload, with the size of the write log when the
 * agent announced it and when it acknowledged it.
 *
 * Why the size is a position: blklogwrites (QEMU block/blklogwrites.c,
 * blk_log_writes_co_log) performs the data write, then writes the log entry
 * (header + data, one pwritev, which extends the file at once) and only then
 * completes the request to the guest. So every write and flush the guest
 * saw complete before the agent's "done" is inside the log at that moment:
 * the entries wholly within `ackBytes` include all of them. A few entries
 * completing between the guest's "done" and the host's stat may fall in as
 * well, which only moves the position later: a state placed before it then
 * expects less, never more.
 */
export interface StepAck {
  name: string;
  kind: StepKind;
  exitCode: number;
  output: string;
  /** Log file size at the step's start marker. */
  startBytes?: number;
  /** Log file size when the agent's "done" arrived. */
  ackBytes: number;
}

export interface RecordedWorkload {
  logPath: string;
  /** The steps as runWorkload would report them (exit codes of those that finished). */
  records: StepRecord[];
  acks: StepAck[];
  ending: 'clean' | 'killed';
}

export interface RecordOptions {
  /** How the VM ends: a clean power-off (the agent syncs and unmounts: a last epoch) or a kill right after the last step. Default 'kill'. */
  end?: 'poweroff' | 'kill';
  stepTimeoutMs?: number;
}

function logSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/**
 * Run every step through the agent on a VM launched with `disk.writeLog`,
 * taking the log's size at each start marker and acknowledgement (read
 * synchronously in the message's callback, so nothing else runs between the
 * message and the stat).
 */
export async function runRecordedWorkload(
  vm: Machine,
  steps: readonly Step[],
  caseSeed: number,
  logPath: string,
  opts: RecordOptions = {},
): Promise<RecordedWorkload> {
  const records: StepRecord[] = [];
  const acks: StepAck[] = [];
  const timeoutMs = opts.stepTimeoutMs ?? 120_000;
  const t0 = performance.now();
  for (const step of steps) {
    const [cmd, args] = stepCommand(step, caseSeed);
    const record: StepRecord = { name: step.name, kind: step.kind };
    records.push(record);
    let startBytes: number | undefined;
    const sent = vm.agent.send(cmd, args);
    void sent.started.then(
      (t) => {
        startBytes = logSize(logPath);
        record.startedAtMs = t - t0;
      },
      () => {},
    );
    const ack = sent.done.then((r) => ({ r, ackBytes: logSize(logPath) }));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new InfraError(`step "${step.name}" did not finish within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
    });
    const { r, ackBytes } = await Promise.race([ack, timeout]).finally(() => clearTimeout(timer));
    record.exitCode = r.exitCode;
    record.output = r.output;
    record.durationMs = performance.now() - t0 - (record.startedAtMs ?? 0);
    acks.push({
      name: step.name,
      kind: step.kind,
      exitCode: r.exitCode,
      output: r.output,
      ...(startBytes !== undefined ? { startBytes } : {}),
      ackBytes,
    });
    if (step.kind === 'mount' && r.exitCode !== 0)
      throw new InfraError(`mount failed in the guest (exit ${r.exitCode}): ${r.output.trim()}`);
  }
  if ((opts.end ?? 'kill') === 'kill') {
    await vm.kill();
    return { logPath, records, acks, ending: 'killed' };
  }
  await vm.powerOff();
  return { logPath, records, acks, ending: 'clean' };
}

/** A step acknowledgement placed in the log: entries [0, position) were logged before the host saw it. */
export interface AckPosition {
  name: string;
  kind: StepKind;
  exitCode: number;
  /** Entries logged before the step's start marker. */
  startPosition?: number;
  position: number;
}

export function ackPositions(log: WriteLog, acks: readonly StepAck[]): AckPosition[] {
  return acks.map((a) => ({
    name: a.name,
    kind: a.kind,
    exitCode: a.exitCode,
    ...(a.startBytes !== undefined ? { startPosition: log.positionAtBytes(a.startBytes) } : {}),
    position: log.positionAtBytes(a.ackBytes),
  }));
}

/**
 * The step records as they stood at log position `position`: steps acked at
 * or before it keep their exit status, later ones look unfinished. Feed to
 * deriveExpectations for the durability a state at that position must show.
 */
export function recordsAt(acks: readonly AckPosition[], records: readonly StepRecord[], position: number): StepRecord[] {
  const acked = new Set(acks.filter((a) => a.position <= position).map((a) => a.name));
  // A step whose start marker came after the state had not begun: nothing of it is on the disk.
  const notStarted = new Set(acks.filter((a) => a.startPosition !== undefined && a.startPosition > position).map((a) => a.name));
  return records.map((r) => {
    if (acked.has(r.name)) return { ...r };
    const { exitCode: _e, output: _o, durationMs: _d, ...rest } = r;
    return notStarted.has(r.name) ? { ...rest, notStarted: true as const } : rest;
  });
}
