import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The dashboard's browser bundle: one script and one stylesheet. */
export interface UiAssets {
  js: string;
  css: string;
}

/** Where the built bundle sits next to this module: `dist/ui/` in a release. */
const builtDir = new URL('./ui/', import.meta.url);
/** The dashboard's sources (apps/registry/ui), present in the workspace only. */
const sourceEntry = fileURLToPath(new URL('../ui/main.tsx', import.meta.url));

/**
 * esbuild options shared by `pnpm build` (scripts/build-ui.ts) and the
 * workspace's build on first request: one minified ES module and its CSS.
 */
export const uiBuildOptions = {
  entryPoints: { app: sourceEntry },
  bundle: true,
  format: 'esm',
  minify: true,
  target: 'es2020',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  logLevel: 'silent',
} as const;

let loading: Promise<UiAssets> | undefined;

/**
 * The bundle a release ships (`dist/ui/app.js`, built by `pnpm build`), or,
 * running from the workspace's sources (tsx: quickstart, tests), built in
 * memory once per process with esbuild, a dev dependency present there. So a
 * fresh clone needs no build step, and a source edit is never hidden by an
 * old bundle.
 */
export function uiAssets(): Promise<UiAssets> {
  loading ??= load().catch((err: unknown) => {
    loading = undefined;
    throw err;
  });
  return loading;
}

async function load(): Promise<UiAssets> {
  const js = new URL('app.js', builtDir);
  if (existsSync(js)) {
    return { js: readFileSync(js, 'utf8'), css: readFileSync(new URL('app.css', builtDir), 'utf8') };
  }
  if (!existsSync(sourceEntry)) {
    throw new Error(`the dashboard bundle is missing (${fileURLToPath(js)}): rebuild the package`);
  }
  const esbuild = await import('esbuild');
  const out = await esbuild.build({ ...uiBuildOptions, write: false, outdir: '/ui' });
  const text = (ext: string) => out.outputFiles.find((f) => f.path.endsWith(ext))?.text ?? '';
  return { js: text('.js'), css: text('.css') };
}
