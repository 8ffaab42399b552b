// Free-running rates of the race test/vm/hold.test.ts holds: npx tsx test/crash/hold-measure.ts [RUNS] [free1,pinned2]
// (QCRASH_TEST_STOCK_RELEASE picks another installed cloud kernel). Not a tap file: a measurement, reported in the hold work.
import { raceSetup, runRace } from './hold-race.ts';
import { TempDir } from '../../harness/util/tempdir.ts';
const env = await raceSetup();
const tmp = await TempDir.create('hold-measure');
const n = Number(process.argv[2] ?? 10);
const modes = (process.argv[3] ?? 'free1,pinned2').split(',');
for (const mode of modes) {
  let hits = 0;
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    const o = mode === 'free1' ? { cpus: 1, paceUs: 200, seed: i + 1 } : { cpus: 2, paceUs: 2000, seed: i + 1 };
    const r = await runRace(env, tmp, `${mode}-${i}`, o);
    if (r.raceHit) hits++;
    rows.push(
      `${mode} run ${i + 1}: ret=${r.ret} errno=${r.errno} mapping=${r.mapping} hit=${r.raceHit} ${Math.round(r.ms)} ms; writer: ${r.outcome.records.find((x) => x.name === 'holes-stop')?.output?.trim()}`,
    );
    console.log(rows.at(-1));
  }
  console.log(`${mode}: race hit in ${hits} of ${n} runs`);
}
await tmp.remove();
