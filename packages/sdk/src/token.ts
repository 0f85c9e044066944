import { readFileSync } from 'node:fs';

/**
 * The token from the environment: `MESH_TOKEN`, else the first line of the
 * file `MESH_TOKEN_FILE` names that is neither blank nor a `#` comment.
 */
export function tokenFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.MESH_TOKEN?.trim()) return env.MESH_TOKEN.trim();
  const file = env.MESH_TOKEN_FILE?.trim();
  if (!file) return undefined;
  const line = readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l && !l.startsWith('#'));
  if (!line) throw new Error(`MESH_TOKEN_FILE ${file} holds no token`);
  return line;
}
