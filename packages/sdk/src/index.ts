import { readFileSync } from 'node:fs';

/**
 * The agent SDK: registry client, agent (register, heartbeat) and job worker
 * arrive with the agents/SDK release. This version exports its own version,
 * which it will send as `X-Mesh-Sdk-Version`.
 *
 * @example
 * import { sdkVersion } from '@mesh/sdk';
 * console.log(sdkVersion); // "0.1.0"
 */
export const sdkVersion: string = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version;
