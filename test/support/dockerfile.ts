/** One Dockerfile instruction: `COPY --from=build /opt/mesh /opt/mesh` → keyword COPY, its flags and arguments. */
export interface Instruction {
  keyword: string;
  /** `--from=build` → `{ from: 'build' }`. */
  flags: Record<string, string>;
  /** The rest: words of the shell form, or the elements of the exec form (`["node", "x.js"]`). */
  args: string[];
  /** The instruction's text after the keyword, continuations joined. */
  text: string;
  line: number;
}

export interface Stage {
  /** `AS build`, or undefined for an unnamed stage. */
  name: string | undefined;
  base: string;
  instructions: Instruction[];
}

/**
 * Just enough of the Dockerfile grammar for checking what a Dockerfile copies
 * and runs: comments, `\` continuations, flags, the exec form (JSON) and the
 * shell form split on whitespace. ARG values are substituted in FROM lines.
 */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const args = new Map<string, string>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i] ?? '';
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) {
      i += 1;
      const next = lines[i] ?? '';
      if (/^\s*#/.test(next)) continue;
      line = `${line.slice(0, -1)} ${next.trim()}`;
    }
    const match = /^\s*(\w+)\s+(.*)$/.exec(line);
    if (!match) throw new Error(`Dockerfile line ${start + 1}: cannot read "${line}"`);
    const keyword = (match[1] ?? '').toUpperCase();
    let rest = (match[2] ?? '').trim();
    const flags: Record<string, string> = {};
    for (let flag = /^--(\w[\w-]*)=(\S+)\s+/.exec(rest); flag; flag = /^--(\w[\w-]*)=(\S+)\s+/.exec(rest)) {
      flags[flag[1] ?? ''] = flag[2] ?? '';
      rest = rest.slice(flag[0].length);
    }
    if (keyword === 'HEALTHCHECK') rest = rest.replace(/^CMD\s+/i, '');
    const words = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/).filter(Boolean);
    const instruction: Instruction = { keyword, flags, args: words, text: rest, line: start + 1 };
    if (keyword === 'ARG') {
      const [name, value] = rest.split('=');
      if (name && value !== undefined) args.set(name, value);
    } else if (keyword === 'FROM') {
      const base = (words[0] ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args.get(a ?? b) ?? '');
      const as = words.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({ name: as >= 0 ? words[as + 1] : undefined, base, instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`Dockerfile line ${start + 1}: ${keyword} before FROM`);
      stage.instructions.push(instruction);
    }
  }
  return stages;
}

/** A `.dockerignore` pattern as a RegExp over context-relative paths (`**`, `*`, `?`; no `!` exceptions). */
export function dockerignorePattern(pattern: string): RegExp {
  const glob = pattern.replace(/^\/+|\/+$/g, '');
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      re += glob[i + 2] === '/' ? '(?:.*/)?' : '.*';
      i += glob[i + 2] === '/' ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  // A matched folder excludes everything under it.
  return new RegExp(`^${re}(?:/.*)?$`);
}
