#!/usr/bin/env node
// Runs the TypeScript source through tsx so that a fresh clone needs no build
// step and a developer editing harness/ never runs a stale dist/.
// This file alone ends the process: main returns the exit code.
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../harness/cli/main.ts');
process.exit(await main(process.argv));
