// `pnpm build` (after tsc): the dashboard's bundle into dist/ui/, shipped in
// the package (src/ui-assets.ts serves it; from sources it builds in memory).
import { build } from 'esbuild';
import { uiBuildOptions } from '../src/ui-assets.ts';

const outdir = new URL('../dist/ui/', import.meta.url).pathname;
await build({ ...uiBuildOptions, outdir, write: true });
process.stdout.write(`dashboard bundle written to ${outdir}\n`);
