import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { type K8sObject, repoRoot } from './support.ts';

/** The models' TypeScript interface of each kind, by module and name. */
const interfaces: Record<string, [module: string, name: string]> = {
  'apps/v1 Deployment': ['kubernetes-models/apps/v1', 'IDeployment'],
  'v1 Service': ['kubernetes-models/v1', 'IService'],
  'policy/v1 PodDisruptionBudget': ['kubernetes-models/policy/v1', 'IPodDisruptionBudget'],
  'networking.k8s.io/v1 NetworkPolicy': ['kubernetes-models/networking.k8s.io/v1', 'INetworkPolicy'],
  'argoproj.io/v1alpha1 Rollout': ['@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1', 'IRollout'],
  'monitoring.coreos.com/v1 ServiceMonitor': [
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
    'IServiceMonitor',
  ],
};

/**
 * Unknown fields, which the models' JSON-schema validators let through (a
 * misspelt `matchLabelKey` would pass them): each object is written as an
 * object literal typed with its kind's interface and compiled, so TypeScript's
 * excess-property check refuses any field the API does not have, at any depth.
 * Returns the compiler's messages, empty when every field is known.
 */
export function unknownFields(objects: K8sObject[]): string[] {
  // Under node_modules/.cache so that the models resolve from the repository's node_modules.
  const dir = join(repoRoot, 'node_modules', '.cache', `mesh-strict-${process.pid}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'objects.ts');
  const imports = new Map<string, Set<string>>();
  const lines = objects.map((o, i) => {
    const entry = interfaces[`${o.apiVersion} ${o.kind}`];
    if (!entry) throw new Error(`${o.apiVersion} ${o.kind} has no interface here`);
    const [module, name] = entry;
    imports.set(module, (imports.get(module) ?? new Set()).add(name));
    return `// ${o.kind}/${o.metadata.name}\nexport const o${i}: ${name} = ${JSON.stringify(o, null, 2)};`;
  });
  const head = [...imports].map(([m, names]) => `import type { ${[...names].join(', ')} } from '${m}';`);
  writeFileSync(file, [...head, ...lines].join('\n'));
  try {
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: [],
    });
    return ts.getPreEmitDiagnostics(program).map((d) => {
      const where =
        d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
      const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      return where ? `line ${where.line + 1}: ${text}` : text;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
