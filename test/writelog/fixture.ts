import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import type { StepAck } from '../../harness/crash/writelog/record.ts';
import type { StepRecord } from '../../harness/crash/expectations.ts';

/** The committed log of one real run (test/fixtures/writelog/README.md), unpacked to `dest`. */
export function fixtureLog(dest: string): string {
  writeFileSync(dest, gunzipSync(readFileSync(new URL('../fixtures/writelog/small-4k-workload.log.gz', import.meta.url))));
  return dest;
}

export function fixtureAcks(): { acks: StepAck[]; records: StepRecord[] } {
  return JSON.parse(readFileSync(new URL('../fixtures/writelog/small-4k-workload.acks.json', import.meta.url), 'utf8')) as {
    acks: StepAck[];
    records: StepRecord[];
  };
}

export function fixtureText(name: string): string {
  return readFileSync(new URL(`../fixtures/writelog/${name}`, import.meta.url), 'utf8');
}
