import { parentPort, workerData } from 'node:worker_threads';
import { WriteLog } from '../crash/writelog/format.ts';
import { replayPrefix } from '../crash/writelog/replay.ts';
import { errorMessage } from '../util/errors.ts';

/**
 * One replayer of the fstests-style loop (writelog-bench.ts): like fstests'
 * replay-log, a separate thread of control per job, so that J jobs replay J
 * prefixes at once. Opens the log once, then per request copies the base
 * and replays entries [0, count) onto the copy, with the same replay code
 * the incremental path uses.
 */
interface Request {
  id: number;
  dest: string;
  count: number;
}

const { logPath, basePath } = workerData as { logPath: string; basePath: string };
const log = await WriteLog.open(logPath);
parentPort!.on('message', (r: Request | 'close') => {
  if (r === 'close') {
    void log.close().then(() => process.exit(0));
    return;
  }
  replayPrefix(log, basePath, r.dest, r.count).then(
    () => parentPort!.postMessage({ id: r.id }),
    (e: unknown) => parentPort!.postMessage({ id: r.id, error: errorMessage(e) }),
  );
});
parentPort!.postMessage({ ready: true });
