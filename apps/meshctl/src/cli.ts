#!/usr/bin/env node
// The released `meshctl` binary (publishConfig.bin): compiled JavaScript, no
// TypeScript at run time. In the workspace, bin/meshctl.js runs the sources
// through tsx instead.
import { main } from './main.ts';

await main(process.argv.slice(2));
