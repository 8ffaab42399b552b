import { getEachMessage, sendMessage } from 'execa';
import { WriteLog } from '../crash/writelog/format.ts';
import { replayPrefix } from '../crash/writelog/replay.ts';
import { errorMessage } from '../util/errors.ts';

/**
 * One replayer of the fstests-style loop (writelog-bench.ts), a process of
 * its own as each fstests `replay-log` is: J jobs replay J prefixes at once,
 * and their buffers stay out of the harness process, whose size is what
 * every e2fsck spawn of every path pays to fork. Opens the log once, then
 * per request copies the base and replays entries [0, count) onto the copy,
 * with the same replay code the incremental path uses. Started by the bench
 * with an IPC channel; ends when the bench disconnects.
 */
interface Request {
  id: number;
  dest: string;
  count: number;
}

const [logPath, basePath] = process.argv.slice(2) as [string, string];
const log = await WriteLog.open(logPath);
await sendMessage({ ready: true });
for await (const m of getEachMessage()) {
  const r = m as unknown as Request;
  try {
    await replayPrefix(log, basePath, r.dest, r.count);
    await sendMessage({ id: r.id });
  } catch (e) {
    await sendMessage({ id: r.id, error: errorMessage(e) });
  }
}
await log.close();
