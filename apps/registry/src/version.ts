import { readFileSync } from 'node:fs';

/** This build's version, from the registry's package.json. */
export const registryVersion: string = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version;
