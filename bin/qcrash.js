#!/usr/bin/env node
// Runs the TypeScript source through tsx so that a fresh clone needs no build
// step and a developer editing harness/ never runs a stale dist/.
import { register } from 'tsx/esm/api';
register();
await import('../harness/cli/main.ts');
