import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshctl } from '../meshctl/support.ts';

// Issue 20, "Docs: one consistent way to address replicas … checked by running
// every command the docs print against a test fleet". Every `meshctl …` line of
// the docs' code blocks (and inline code) must name a command meshctl has and
// only flags that command knows; the code blocks marked
// `<!-- meshctl-test: run -->` are run, in order, against two replicas
// (registry-a, registry-b), and every meshctl line in them must exit 0.

const root = fileURLToPath(new URL('../..', import.meta.url));
const docs = ['docs/upgrading.md', 'docs/meshctl.md', 'docs/operations.md'];
const workspaceVersion = (
  JSON.parse(readFileSync(`${root}apps/meshctl/package.json`, 'utf8')) as { version: string }
).version;

interface DocCommand {
  doc: string;
  line: string;
  run: boolean;
}

/** `meshctl …` lines of code blocks (continuations joined, prompts, numbering and comments cut) and inline spans. */
function commandsOf(doc: string): DocCommand[] {
  const text = readFileSync(`${root}${doc}`, 'utf8');
  const out: DocCommand[] = [];
  const blocks = /(<!-- meshctl-test: run -->\s*\n)?```(?:sh|bash|console|text)?\n([\s\S]*?)```/g;
  let outside = '';
  let last = 0;
  for (const m of text.matchAll(blocks)) {
    outside += text.slice(last, m.index);
    last = (m.index ?? 0) + m[0].length;
    const lines = (m[2] as string).replace(/\\\n\s*/g, ' ').split('\n');
    for (const raw of lines) {
      const line = raw
        .replace(/^\s*\$\s+/, '')
        .replace(/^\s*\d+\.\s+/, '')
        .replace(/^\s*pnpm\s+/, '')
        .replace(/\s+#.*$/, '')
        .trim();
      if (line.startsWith('meshctl ')) out.push({ doc, line, run: Boolean(m[1]) });
    }
  }
  outside += text.slice(last);
  for (const m of outside.replace(/\n\s*/g, ' ').matchAll(/`(meshctl [^`]+)`/g)) {
    out.push({ doc, line: (m[1] as string).trim(), run: false });
  }
  return out;
}

const all = docs.flatMap(commandsOf);
const helpCache = new Map<string, Promise<{ code: number | null; text: string }>>();
const help = (path: string[]) => {
  const key = path.join(' ');
  let p = helpCache.get(key);
  if (!p) {
    p = meshctl([...path, '--help']).then((r) => ({ code: r.code, text: r.stdout + r.stderr }));
    helpCache.set(key, p);
  }
  return p;
};

/** The command words of a line: `meshctl registry drain …` → ['registry', 'drain'], as meshctl's own help lists them. */
async function commandPath(words: string[]): Promise<string[]> {
  const top = await help([]);
  const first = words[0] as string;
  if (!new RegExp(`^\\s+meshctl ${first}\\b`, 'm').test(top.text)) return [first];
  const sub = words[1];
  if (sub && /^[a-z][a-z-]*$/.test(sub)) {
    const h = await help([first]);
    if (new RegExp(`^\\s+meshctl ${first} ${sub}\\b`, 'm').test(h.text)) return [first, sub];
  }
  return [first];
}

describe('the meshctl commands the docs print', () => {
  it(`are commands meshctl has, with flags it knows (${all.length} lines)`, async () => {
    expect(all.filter((c) => c.run).length).toBeGreaterThanOrEqual(8);
    const problems: string[] = [];
    const top = await help([]);
    // Every help text at once (each is a meshctl process): the first word's, then the paths'.
    const checked = all.filter((c) => {
      const words = c.line.split(/\s+/).slice(1);
      return words.length > 0 && !/^[-<]/.test(words[0] as string) && !words.some((w) => w.includes('|'));
    });
    await Promise.all(checked.map((c) => commandPath(c.line.split(/\s+/).slice(1)).then((p) => help(p))));
    for (const c of all) {
      const words = c.line.split(/\s+/).slice(1);
      // `meshctl --help`, `meshctl --version`; `meshctl <version>` is a value (applied_by), not a command.
      if (words.length === 0 || /^[-<]/.test(words[0] as string)) continue;
      if (words.some((w) => w.includes('|'))) continue; // prose: `registry status|drain|resume`
      const path = await commandPath(words);
      if (!new RegExp(`^\\s+meshctl ${path[0]}\\b`, 'm').test(top.text)) {
        problems.push(`${c.doc}: unknown command "meshctl ${path.join(' ')}" in: ${c.line}`);
        continue;
      }
      const h = await help(path);
      if (h.code !== 0) {
        problems.push(`${c.doc}: meshctl ${path.join(' ')} --help exited ${h.code}`);
        continue;
      }
      for (const flag of c.line.matchAll(/(?:^|[\s[])(--[a-z][a-z-]*)/g)) {
        const name = flag[1] as string;
        if (!new RegExp(`${name}(?![a-z-])`).test(h.text)) {
          problems.push(`${c.doc}: "meshctl ${path.join(' ')}" has no ${name}, in: ${c.line}`);
        }
      }
    }
    expect(problems).toEqual([]);
  }, 300_000);
});

describe('the commands of the marked blocks, against two replicas', () => {
  const db = useTestDatabase();
  const fleet: Record<string, RegistryProcess> = {};
  const snapshots = mkdtempSync(join(tmpdir(), 'docs-snapshots-'));
  beforeAll(async () => {
    for (const name of ['registry-a', 'registry-b']) {
      fleet[name] = await spawnRegistry({
        databaseUrl: db.url,
        replicaId: name,
        adminPort: await freePort(),
        env: { MESH_REPLICA_HEARTBEAT: '200ms' },
      });
    }
  });
  afterAll(async () => {
    for (const r of Object.values(fleet)) await r.stop();
    rmSync(snapshots, { recursive: true, force: true });
  });

  /** The docs' hosts become the fleet's URLs; their example versions, the release under test. */
  const concrete = (line: string) =>
    line
      .replace(/http:\/\/(registry-[ab]):8000/g, (_, n: string) => fleet[n]?.url as string)
      .replace(/http:\/\/(registry-[ab]):8001/g, (_, n: string) => fleet[n]?.adminUrl as string)
      .replace(/\b0\.[23]\.0\b/g, workspaceVersion);

  it('exit 0, in the order the docs give them', async () => {
    const runs = all.filter((c) => c.run);
    const failures: string[] = [];
    for (const c of runs) {
      const args = concrete(c.line).split(/\s+/).slice(1);
      const res = await meshctl(args, {
        env: { DATABASE_URL: db.url, MESH_SNAPSHOT_DIR: snapshots },
        timeoutMs: 90_000,
      });
      if (res.code !== 0)
        failures.push(`${c.doc}: ${c.line}\n  exit ${res.code}: ${res.stderr.trim().slice(0, 400)}`);
    }
    expect(failures).toEqual([]);
  }, 300_000);
});
