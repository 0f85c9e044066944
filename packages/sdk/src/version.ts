import { readFileSync } from 'node:fs';

/** This SDK's version, sent as `X-Mesh-Sdk-Version`. */
export const sdkVersion: string = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version;
