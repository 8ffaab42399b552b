/**
 * How many cases one scenario file may expand to: its crash points times
 * `repeat`, plus its write-log units' budgets (each unit replays at most its
 * budget of crash states) times `repeat`. Counted from the numbers the file
 * gives, before any generator makes a point, so `commits: { max: 100000000 }`
 * is refused at its line instead of filling the heap. The largest shipped
 * scenarios (scenarios/sweeps/log-*-all.yaml, budget 20000) fit; `--max-cases
 * N` on run, validate and nightly raises it.
 */
export const defaultMaxCases = 25_000;

/**
 * `kernel-hits: { first: N, sample: S }` scores every one of the first N hits
 * to draw its sample: N is bounded on its own, as `repeat` and the crash-state
 * budgets are.
 */
export const maxSampledHits = 100_000;

let maxCases = defaultMaxCases;

/** Set by the CLI's --max-cases for this process. */
export function setMaxCases(n: number): void {
  maxCases = n;
}

export function maxCasesPerScenario(): number {
  return maxCases;
}
