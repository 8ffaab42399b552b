import { readFileSync } from 'node:fs';

/** qcrash's version, as package.json gives it: the one place it is written. */
export const qcrashVersion: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
