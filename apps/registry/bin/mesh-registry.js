#!/usr/bin/env node
// Runs the TypeScript sources directly (workspace packages export source; see
// STYLE.md 1). tsx compiles on load, once per process.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/main.ts');
await main(process.argv.slice(2));
