import { sha256 } from '../util/hash.ts';
import { ConfigError } from '../util/errors.ts';
import { crashPointLabel, type CaseSpec, type LogUnitSpec, type Scenario } from './model.ts';

/** Derive a case's seed from the run seed and the case id: a case reruns alone with the same randomness. */
export function caseSeed(runSeed: number, caseId: string): number {
  return parseInt(sha256(`${runSeed}/${caseId}`).slice(0, 8), 16);
}

/** Scenario x crash point x repetition -> cases, in a stable order. */
export function expandCases(scenarios: readonly Scenario[], runSeed: number): CaseSpec[] {
  checkDistinctIds(scenarios);
  const cases: CaseSpec[] = [];
  for (const s of scenarios) {
    const labels = new Set<string>();
    for (const p of s.crashPoints) {
      const label = crashPointLabel(p);
      if (labels.has(label)) continue; // a generator and an explicit point may name the same state
      labels.add(label);
      for (let rep = 1; rep <= s.repeat; rep++) {
        const id = `${s.name}/${label}/r${rep}`;
        cases.push({ id, scenario: s, crashPoint: p, pointLabel: label, repetition: rep, seed: caseSeed(runSeed, id) });
      }
    }
  }
  return cases;
}

/**
 * Scenario x repetition -> write-log units (`<scenario>/log/r<rep>`), for
 * the scenarios with `crash-states:`. Their cases (one per crash state) are
 * known only once the unit's log is recorded.
 */
export function expandLogUnits(scenarios: readonly Scenario[], runSeed: number): LogUnitSpec[] {
  checkDistinctIds(scenarios);
  const units: LogUnitSpec[] = [];
  for (const s of scenarios) {
    if (!s.crashStates) continue;
    for (let rep = 1; rep <= s.repeat; rep++) {
      const id = `${s.name}/log/r${rep}`;
      units.push({ id, scenario: s, crashStates: s.crashStates, repetition: rep, seed: caseSeed(runSeed, id) });
    }
  }
  return units;
}

function checkDistinctIds(scenarios: readonly Scenario[]): void {
  const byName = new Map<string, Scenario>();
  for (const s of scenarios) {
    const other = byName.get(s.name);
    // Two scenarios with one id would write the same case folders (and race on them with --jobs > 1).
    if (other)
      throw new ConfigError(
        `two scenarios have the id "${s.name}": ${other.file} and ${s.file}; give one of them a distinct \`name:\``,
      );
    byName.set(s.name, s);
  }
}
