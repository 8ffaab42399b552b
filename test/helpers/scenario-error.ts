import { parseScenario } from '../../harness/run/resolve-scenario.ts';
import { ConfigError } from '../../harness/util/errors.ts';

/** The ConfigError parsing `text` as scenarios/bad.yaml gives; any other outcome fails the test. */
export async function scenarioErrorOf(text: string): Promise<ConfigError> {
  try {
    await parseScenario('scenarios/bad.yaml', text);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}
