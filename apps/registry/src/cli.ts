#!/usr/bin/env node
// The released `mesh-registry` binary (publishConfig.bin): compiled JavaScript,
// no TypeScript at run time. In the workspace, bin/mesh-registry.js runs the
// sources through tsx instead.
import { main } from './main.ts';

await main(process.argv.slice(2));
