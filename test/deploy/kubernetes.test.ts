import { execFile as execFileCb } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Rollout } from '@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { freePort, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { Deployment } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Service } from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseDockerfile } from '../support/dockerfile.ts';
import { unknownFields } from './strict-fields.ts';
import {
  find,
  type K8sObject,
  readRepoFile,
  registryEnvNames,
  registryHelp,
  render,
  repoRoot,
  selects,
} from './support.ts';

const execFile = promisify(execFileCb);

/** Each kind the manifests may hold, with the schema it is validated against. */
const models: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1 Deployment': Deployment,
  'v1 Service': Service,
  'policy/v1 PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1 NetworkPolicy': NetworkPolicy,
  'argoproj.io/v1alpha1 Rollout': Rollout,
  'monitoring.coreos.com/v1 ServiceMonitor': ServiceMonitor,
};

function validate(o: K8sObject): void {
  const Model = models[`${o.apiVersion} ${o.kind}`];
  if (!Model) throw new Error(`${o.apiVersion} ${o.kind} has no schema here`);
  new Model(o as never).validate();
}

/** Go durations as the manifests write them (`15s`, `1m`), in seconds. */
const seconds = (d: string): number => {
  const m = /^(\d+)(s|m)$/.exec(d);
  if (!m) throw new Error(`not a duration in seconds or minutes: ${d}`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
};

// biome-ignore lint/suspicious/noExplicitAny: the rendered pod template is walked freely
type Container = any;
const container = (workload: K8sObject): Container => {
  const containers = workload.spec.template.spec.containers;
  expect(containers).toHaveLength(1);
  return containers[0];
};
const envValue = (c: Container, name: string): string | undefined =>
  c.env.find((e: { name: string }) => e.name === name)?.value;
const portOf = (c: Container, name: string): number =>
  c.ports.find((p: { name: string }) => p.name === name)?.containerPort;

let base: K8sObject[];
let canary: K8sObject[];
let monitored: K8sObject[];
beforeAll(async () => {
  [base, canary, monitored] = await Promise.all([
    render(),
    render(['progressive-delivery']),
    render(['service-monitor']),
  ]);
});

describe('deploy/kubernetes: the base', () => {
  it('renders a Deployment, two Services, a PodDisruptionBudget and a NetworkPolicy, each valid against its schema', () => {
    expect(base.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'Deployment/mesh-registry',
      'NetworkPolicy/mesh-registry',
      'PodDisruptionBudget/mesh-registry',
      'Service/mesh-registry',
      'Service/mesh-registry-admin',
    ]);
    for (const o of base) validate(o);
  });

  it('has no field the API does not know, in any object of the base or of the components (TypeScript excess-property check)', async () => {
    const both = await render(['progressive-delivery', 'service-monitor']);
    expect(unknownFields([...base, ...both])).toEqual([]);
    const misspelt = structuredClone(find(base, 'Deployment', 'mesh-registry'));
    misspelt.spec.template.spec.topologySpreadConstraints[0].matchLabelKey = ['pod-template-hash'];
    expect(unknownFields([misspelt]).join('\n')).toMatch(/matchLabelKey/);
  }, 60_000);

  it('the schemas are not vacuous: a wrongly typed field is refused', () => {
    const broken = structuredClone(find(base, 'Deployment', 'mesh-registry'));
    broken.spec.replicas = 'three';
    expect(() => validate(broken)).toThrow(/replicas must be integer/);
  });

  it('never lowers capacity during a rolling update: 3 replicas, maxUnavailable 0, maxSurge 1', () => {
    const d = find(base, 'Deployment', 'mesh-registry');
    expect(d.spec.replicas).toBe(3);
    expect(d.spec.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
    });
  });

  it('sets only environment variables the registry reads, with ports matching the container ports', async () => {
    const c = container(find(base, 'Deployment', 'mesh-registry'));
    const known = await registryEnvNames();
    expect(known.has('DATABASE_URL')).toBe(true); // the help was read
    const names: string[] = c.env.map((e: { name: string }) => e.name);
    expect(names.filter((n) => !known.has(n))).toEqual([]);
    expect(envValue(c, 'HOST')).toBe('0.0.0.0');
    expect(Number(envValue(c, 'PORT'))).toBe(portOf(c, 'http'));
    expect(Number(envValue(c, 'MESH_ADMIN_PORT'))).toBe(portOf(c, 'admin'));
    expect(portOf(c, 'http')).not.toBe(portOf(c, 'admin'));
    const from = (name: string) => c.env.find((e: { name: string }) => e.name === name)?.valueFrom;
    expect(from('MESH_REPLICA_ID')).toEqual({ fieldRef: { fieldPath: 'metadata.name' } });
    expect(from('MESH_ADVERTISE_HOST')).toEqual({ fieldRef: { fieldPath: 'status.podIP' } });
    expect(from('DATABASE_URL')).toEqual({ secretKeyRef: { name: 'mesh-registry', key: 'database-url' } });
    expect(from('MESH_ADMIN_TOKEN')).toEqual({ secretKeyRef: { name: 'mesh-registry', key: 'admin-token' } });
    // Every duration set here parses as the registry's settings do (the help names each).
    for (const n of ['MESH_SHUTDOWN_TIMEOUT', 'MESH_MIGRATION_LOCK_TIMEOUT', 'MESH_DB_CONNECT_TIMEOUT']) {
      expect(seconds(envValue(c, n) ?? '')).toBeGreaterThan(0);
    }
  });

  it('holds no secret: no Secret object, no database URL or token value, no password', () => {
    const text = JSON.stringify(base);
    expect(base.some((o) => o.kind === 'Secret')).toBe(false);
    expect(text).not.toMatch(/postgres(ql)?:\/\//);
    expect(text.toLowerCase()).not.toContain('password');
  });

  it('probes the paths the registry serves, on its main port, and gives boot the time migrations may take', async () => {
    const d = find(base, 'Deployment', 'mesh-registry');
    const c = container(d);
    expect(c.readinessProbe.httpGet).toEqual({ path: '/ready', port: 'http' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    expect(c.startupProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    // The registry listens only once PostgreSQL answered, the migration lock was
    // had and the migrations ran: the startup probe must outlast both waits.
    const bootBudget = c.startupProbe.periodSeconds * c.startupProbe.failureThreshold;
    const waits =
      seconds(envValue(c, 'MESH_DB_CONNECT_TIMEOUT') ?? '') +
      seconds(envValue(c, 'MESH_MIGRATION_LOCK_TIMEOUT') ?? '');
    expect(bootBudget).toBeGreaterThanOrEqual(waits + 60);
    const help = (await registryHelp()).replace(/\s+/g, ' ');
    expect(help).toContain(
      'How long to wait for PostgreSQL at start before exiting (default 20s) [env: MESH_DB_CONNECT_TIMEOUT]',
    );
    expect(help).toContain(
      "How long to wait for another replica's migration lock (default 60s) [env: MESH_MIGRATION_LOCK_TIMEOUT]",
    );
  });

  it('stops with a drain through the admin port, time for endpoints, then SIGTERM, all within the grace period', async () => {
    const d = find(base, 'Deployment', 'mesh-registry');
    const c = container(d);
    const [shell, dashC, script] = c.lifecycle.preStop.exec.command as string[];
    expect([shell, dashC]).toEqual(['/bin/sh', '-c']);
    const [drain, sleep] = (script ?? '').split(';').map((s) => s.trim());
    expect(drain).toBe(
      `meshctl registry drain --registry-url http://127.0.0.1:${portOf(c, 'admin')} --wait --own-claims --wait-timeout 60 --poll-interval 1`,
    );
    // Every flag exists on `meshctl registry drain`.
    const { stdout: drainHelp } = await execFile(process.execPath, [
      join(repoRoot, 'apps/meshctl/bin/meshctl.js'),
      'registry',
      'drain',
      '--help',
    ]);
    for (const flag of drain?.match(/--[a-z-]+/g) ?? []) expect(drainHelp).toContain(`${flag} `);
    // meshctl settings that would send the drain elsewhere than --registry-url.
    const names = c.env.map((e: { name: string }) => e.name);
    for (const n of ['MESH_ADMIN_URL', 'MESH_REGISTRY_URL']) expect(names).not.toContain(n);
    const waitTimeout = Number(/--wait-timeout (\d+)/.exec(drain ?? '')?.[1]);
    const endpointsDelay = Number(/^sleep (\d+)$/.exec(sleep ?? '')?.[1]);
    expect(endpointsDelay).toBeGreaterThanOrEqual(5);
    // poll interval + one request timeout of slack on the drain
    const preStop = waitTimeout + 1 + endpointsDelay;
    const shutdown = seconds(envValue(c, 'MESH_SHUTDOWN_TIMEOUT') ?? '');
    expect(d.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(preStop + shutdown);
  });

  it('runs a preStop command the image has: meshctl on the image PATH, /bin/sh from its launcher', () => {
    const stages = parseDockerfile(readRepoFile('docker/Dockerfile'));
    const runtime = stages.at(-1);
    const env =
      runtime?.instructions
        .filter((i) => i.keyword === 'ENV')
        .map((i) => i.text)
        .join(' ') ?? '';
    const path = /PATH=(\S+)/.exec(env)?.[1] ?? '';
    expect(path.split(':')).toContain('/opt/mesh/bin');
    const assemble = stages[0]?.instructions.find((i) => i.text.includes('scripts/image-files.mjs'));
    expect(assemble?.text).toBe('node scripts/image-files.mjs /opt/mesh');
    const script = readRepoFile('scripts/image-files.mjs');
    // OUT/bin/<bin> for each image package, meshctl among them, run by /bin/sh.
    expect(script).toContain(
      "{ dir: 'meshctl', name: '@mesh/meshctl', source: 'apps/meshctl', bin: 'meshctl' }",
    );
    expect(script).toContain("const launcherPath = join(out, 'bin', bin);");
    expect(script).toContain('return `#!/bin/sh');
  });

  it('runs restricted: uid 1000, read-only root with /tmp on an emptyDir, no escalation, no capabilities, RuntimeDefault seccomp', () => {
    const d = find(base, 'Deployment', 'mesh-registry');
    const pod = d.spec.template.spec;
    const c = container(d);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 1000,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 1000,
      runAsGroup: 1000,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(pod.volumes.find((v: { name: string }) => v.name === 'tmp').emptyDir).toBeDefined();
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(c.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(c.resources.limits.memory).toBeDefined();
  });

  it('spreads the replicas across nodes', () => {
    const d = find(base, 'Deployment', 'mesh-registry');
    const spread = d.spec.template.spec.topologySpreadConstraints;
    const byNode = spread.find((s: { topologyKey: string }) => s.topologyKey === 'kubernetes.io/hostname');
    expect(byNode.maxSkew).toBe(1);
    expect(selects(byNode.labelSelector.matchLabels, d.spec.template.metadata.labels)).toBe(true);
  });

  it('puts the main port on the Service and the admin port never on it; the PDB and the NetworkPolicy select the pods', () => {
    const d = find(base, 'Deployment', 'mesh-registry');
    const c = container(d);
    const labels = d.spec.template.metadata.labels;
    expect(selects(d.spec.selector.matchLabels, labels)).toBe(true);
    const main = find(base, 'Service', 'mesh-registry');
    expect(main.spec.ports).toEqual([{ name: 'http', port: portOf(c, 'http'), targetPort: 'http' }]);
    expect(selects(main.spec.selector, labels)).toBe(true);
    const admin = find(base, 'Service', 'mesh-registry-admin');
    expect(admin.spec.type).toBe('ClusterIP');
    expect(admin.spec.ports).toEqual([{ name: 'admin', port: portOf(c, 'admin'), targetPort: 'admin' }]);
    for (const svc of base.filter((o) => o.kind === 'Service' && o.metadata.name !== 'mesh-registry-admin')) {
      for (const p of svc.spec.ports) expect([p.targetPort, p.port]).not.toContain(portOf(c, 'admin'));
      for (const p of svc.spec.ports) expect(p.targetPort).not.toBe('admin');
    }
    const pdb = find(base, 'PodDisruptionBudget', 'mesh-registry');
    expect(selects(pdb.spec.selector.matchLabels, labels)).toBe(true);
    expect(pdb.spec.maxUnavailable).toBe(1);
    const np = find(base, 'NetworkPolicy', 'mesh-registry');
    expect(selects(np.spec.podSelector.matchLabels, labels)).toBe(true);
    const rules = np.spec.ingress as { from?: unknown[]; ports: { port: string }[] }[];
    const adminRules = rules.filter((r) => r.ports.some((p) => p.port === 'admin'));
    expect(adminRules.length).toBeGreaterThan(0);
    for (const r of adminRules) expect(r.from?.length).toBeGreaterThan(0); // never open to all
    expect(rules.some((r) => r.from === undefined && r.ports.every((p) => p.port === 'http'))).toBe(true);
  });
});

describe('deploy/kubernetes: probes and ports against a running registry', () => {
  const db = useTestDatabase();
  it('serves /ready, /health and /metrics on the main port and /admin/drain only on the admin port, behind the token', async () => {
    const c = container(find(base, 'Deployment', 'mesh-registry'));
    const adminPort = await freePort();
    const token = 'k8s-test-token-123';
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'probe-check',
      adminPort,
      env: { MESH_ADMIN_TOKEN: token },
    });
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
      expect((await fetch(`${r.url}${probe.httpGet.path}`)).status).toBe(200);
    }
    expect((await fetch(`${r.url}/metrics`)).status).toBe(200);
    const auth = { authorization: `Bearer ${token}` };
    // (Without the token the main port answers 401 before it would say 404.)
    expect((await fetch(`${r.url}/admin/drain`, { headers: auth })).status).toBe(404);
    const adminUrl = `http://127.0.0.1:${adminPort}`;
    expect((await fetch(`${adminUrl}/admin/drain`)).status).toBe(401);
    expect((await fetch(`${adminUrl}/admin/drain`, { headers: auth })).status).toBe(200);
    await r.stop();
  });
});

describe('deploy/kubernetes/components/service-monitor', () => {
  it('adds a valid ServiceMonitor scraping /metrics on the main Service port', () => {
    const sm = find(monitored, 'ServiceMonitor', 'mesh-registry');
    validate(sm);
    const main = find(monitored, 'Service', 'mesh-registry');
    const admin = find(monitored, 'Service', 'mesh-registry-admin');
    expect(selects(sm.spec.selector.matchLabels, main.metadata.labels ?? {})).toBe(true);
    expect(selects(sm.spec.selector.matchLabels, admin.metadata.labels ?? {})).toBe(false);
    expect(sm.spec.endpoints).toEqual([{ port: 'http', path: '/metrics', interval: '30s' }]);
    expect(main.spec.ports.map((p: { name: string }) => p.name)).toContain('http');
    expect(monitored.filter((o) => o.kind !== 'ServiceMonitor')).toEqual(base);
  });
});

describe('deploy/kubernetes/components/progressive-delivery', () => {
  it('replaces the Deployment with a valid Rollout of the same pods; every other object unchanged', () => {
    expect(canary.some((o) => o.kind === 'Deployment')).toBe(false);
    for (const o of canary) validate(o);
    const rollout = find(canary, 'Rollout', 'mesh-registry');
    const d = find(base, 'Deployment', 'mesh-registry');
    expect(rollout.spec.replicas).toBe(d.spec.replicas);
    expect(rollout.spec.selector).toEqual(d.spec.selector);
    expect(rollout.spec.minReadySeconds).toBe(d.spec.minReadySeconds);
    // The pod template is the Deployment's, but for the revision label of the spread.
    const template = structuredClone(d.spec.template);
    for (const s of template.spec.topologySpreadConstraints)
      s.matchLabelKeys = ['rollouts-pod-template-hash'];
    expect(rollout.spec.template).toEqual(template);
    const unchanged = base.filter((o) => o.kind !== 'Deployment');
    for (const o of unchanged) expect(find(canary, o.kind, o.metadata.name)).toEqual(o);
  });

  it('canaries one pod, pauses for a manual promotion, and never lowers capacity', () => {
    const rollout = find(canary, 'Rollout', 'mesh-registry');
    const strategy = rollout.spec.strategy.canary;
    expect(strategy).toMatchObject({ maxSurge: 1, maxUnavailable: 0 });
    expect(strategy.steps).toEqual([{ setWeight: 33 }, { pause: {} }]);
    // Argo Rollouts: canary pods = ceil(weight x replicas / 100).
    expect(Math.ceil((33 * rollout.spec.replicas) / 100)).toBe(1);
  });

  it('adds stable and canary Services on the main port only, selecting the Rollout pods', () => {
    const rollout = find(canary, 'Rollout', 'mesh-registry');
    const { canaryService, stableService } = rollout.spec.strategy.canary;
    const c = container(rollout);
    for (const name of [canaryService, stableService]) {
      const svc = find(canary, 'Service', name);
      expect(svc.spec.ports).toEqual([{ name: 'http', port: portOf(c, 'http'), targetPort: 'http' }]);
      expect(selects(svc.spec.selector, rollout.spec.template.metadata.labels)).toBe(true);
    }
    const pdb = find(canary, 'PodDisruptionBudget', 'mesh-registry');
    expect(selects(pdb.spec.selector.matchLabels, rollout.spec.template.metadata.labels)).toBe(true);
  });

  it('composes with the service-monitor component', async () => {
    const both = await render(['progressive-delivery', 'service-monitor']);
    for (const o of both) validate(o);
    expect(both.map((o) => o.kind).sort()).toEqual([
      'NetworkPolicy',
      'PodDisruptionBudget',
      'Rollout',
      'Service',
      'Service',
      'Service',
      'Service',
      'ServiceMonitor',
    ]);
  });
});
