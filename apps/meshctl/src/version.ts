import { readFileSync } from 'node:fs';

/** This meshctl's version (package.json), recorded in snapshots and the migration ledger. */
export const meshctlVersion: string = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version;
