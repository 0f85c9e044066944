import { execFile as execFileCb } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const execFile = promisify(execFileCb);

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const kustomizeBase = join(repoRoot, 'deploy', 'kubernetes');
export const componentsDir = join(kustomizeBase, 'components');

/** A rendered Kubernetes object, loosely typed: the tests walk into it. */
export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered YAML is walked freely by the assertions
  spec?: any;
};

export function parseYamlDocuments(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join('\n'));
      return doc.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

/**
 * `kubectl kustomize` of the base, or of a throwaway overlay that adds the
 * given components (by folder name under deploy/kubernetes/components), as a
 * user's overlay would. Kustomize refuses absolute paths, so the overlay
 * names them relative to itself.
 */
export async function render(components: string[] = []): Promise<K8sObject[]> {
  if (components.length === 0) return kustomize(kustomizeBase);
  const overlay = mkdtempSync(join(tmpdir(), 'mesh-kustomize-'));
  try {
    const rel = (p: string) => relative(overlay, p);
    writeFileSync(
      join(overlay, 'kustomization.yaml'),
      [
        'apiVersion: kustomize.config.k8s.io/v1beta1',
        'kind: Kustomization',
        'resources:',
        `  - ${rel(kustomizeBase)}`,
        'components:',
        ...components.map((c) => `  - ${rel(join(componentsDir, c))}`),
        '',
      ].join('\n'),
    );
    return await kustomize(overlay);
  } finally {
    rmSync(overlay, { recursive: true, force: true });
  }
}

async function kustomize(dir: string): Promise<K8sObject[]> {
  const { stdout } = await execFile('kubectl', ['kustomize', dir], { maxBuffer: 16 * 1024 * 1024 });
  return parseYamlDocuments(stdout);
}

export const find = (objects: K8sObject[], kind: string, name: string): K8sObject => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind}/${name} among ${objects.map((x) => `${x.kind}/${x.metadata.name}`)}`);
  return o;
};

/** The environment variables the registry reads, from `mesh-registry --help` (`[env: A, B]` per setting). */
export async function registryEnvNames(): Promise<Set<string>> {
  const help = await registryHelp();
  const names = new Set<string>();
  for (const m of help.replace(/\s+/g, ' ').matchAll(/\[env: ([^\]]+)\]/g)) {
    for (const n of (m[1] ?? '').split(',')) names.add(n.trim());
  }
  return names;
}

let helpText: Promise<string> | undefined;
export function registryHelp(): Promise<string> {
  helpText ??= execFile(process.execPath, [join(repoRoot, 'apps/registry/bin/mesh-registry.js'), '--help'], {
    env: { ...process.env, COLUMNS: '200' },
  }).then((r) => r.stdout);
  return helpText;
}

export const readRepoFile = (path: string): string => readFileSync(join(repoRoot, path), 'utf8');

/** `selector.matchLabels` ⊆ `labels`. */
export const selects = (matchLabels: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(matchLabels).every(([k, v]) => labels[k] === v);
