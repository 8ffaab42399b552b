/**
 * Race a promise against a timer. The error comes from `onTimeout`, so each
 * caller raises its own typed error (and may clean up, e.g. forget a pending
 * request) exactly when the time is up. The timer never outlives the race.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** A promise that resolves after `ms`; timers may fire a little early, so this waits until the time has really passed. */
export async function sleepAtLeast(ms: number): Promise<void> {
  const end = performance.now() + ms;
  for (let left = ms; left > 0; left = end - performance.now()) {
    await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(left))));
  }
}
