import { execFile as execFileCb } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import type { CreateJobResponse } from '@mesh/protocol';
import { JobWorker, RegistryClient, type WorkerNotice } from '@mesh/sdk';
import { freePort, type RegistryProcess, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { until } from '../support/until.ts';
import { find, render, repoRoot } from './support.ts';

const execFile = promisify(execFileCb);
const db = useTestDatabase();
const capability = 'k8s-rolling';
const token = 'rolling-update-token-1234';

/**
 * A folder standing for the image's /opt/mesh/bin: a `meshctl` launcher as
 * scripts/image-files.mjs writes it (`exec node …`), here on the workspace's
 * meshctl (the image's runs the compiled one).
 */
function meshctlOnPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-image-bin-'));
  const launcher = join(dir, 'meshctl');
  writeFileSync(
    launcher,
    `#!/bin/sh\nexec "${process.execPath}" "${join(repoRoot, 'apps/meshctl/bin/meshctl.js')}" "$@"\n`,
  );
  chmodSync(launcher, 0o755);
  return dir;
}

interface Pod {
  name: string;
  registry: RegistryProcess;
  adminPort: number;
}

describe('the rolling update as Kubernetes runs it (real registry processes, the rendered preStop)', () => {
  it('replaces 3 replicas one by one under a job stream: no 5xx, no refused connection, no job lost or completed twice', async () => {
    const deployment = find(await render(), 'Deployment', 'mesh-registry');
    const { maxSurge, maxUnavailable } = deployment.spec.strategy.rollingUpdate;
    expect([maxSurge, maxUnavailable]).toEqual([1, 0]); // what this replay does
    const template = deployment.spec.template.spec;
    const container = template.containers[0];
    const manifestAdminPort = container.ports.find((p: { name: string }) => p.name === 'admin').containerPort;
    const [shell, dashC, preStopScript] = container.lifecycle.preStop.exec.command as string[];
    // The manifest's literal settings (timeouts), as the pods get them; the
    // bind address and ports are this machine's.
    const manifestEnv: Record<string, string> = {};
    for (const e of container.env as { name: string; value?: string }[]) {
      if (e.value !== undefined && !['HOST', 'PORT', 'MESH_ADMIN_PORT'].includes(e.name))
        manifestEnv[e.name] = e.value;
    }
    const minReadyMs = deployment.spec.minReadySeconds * 1000;
    const graceMs = template.terminationGracePeriodSeconds * 1000;

    const bin = meshctlOnPath();
    // The hook sees the pod's environment, not this machine's meshctl settings
    // (MESH_ADMIN_URL would win over --registry-url).
    const podEnv = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/^(MESH_|MCP_MESH_)/.test(k) && k !== 'DATABASE_URL'),
    );
    const mainPorts = await Promise.all(Array.from({ length: 6 }, () => freePort()));
    const startPod = async (i: number): Promise<Pod> => {
      const adminPort = await freePort();
      const name = `mesh-registry-${i < 3 ? 'old' : 'new'}-${i % 3}`;
      const registry = await spawnRegistry({
        databaseUrl: db.url,
        replicaId: name,
        port: mainPorts[i],
        adminPort,
        env: { ...manifestEnv, MESH_ADMIN_TOKEN: token },
      });
      return { name, registry, adminPort };
    };

    // The Service's endpoints: ready pods that are not terminating.
    const pods: Pod[] = [];
    for (let i = 0; i < 3; i++) pods.push(await startPod(i));
    const endpoints = pods.map((p) => p.registry.url);

    // Agents: SDK workers given every replica's URL, old and new (failover).
    const notices: WorkerNotice[] = [];
    const client = new RegistryClient({ urls: mainPorts.map((p) => `http://127.0.0.1:${p}`) });
    const workers = Array.from(
      { length: 3 },
      (_, w) =>
        new JobWorker({
          client,
          instanceId: `k8s-worker-${w}`,
          capability,
          concurrency: 3,
          maxIdleMs: 200,
          onNotice: (n) => notices.push(n),
          handler: async ({ payload }) => {
            // Every 10th job is long enough to be in flight when its replica drains.
            await new Promise((r) => setTimeout(r, (payload.n as number) % 10 === 0 ? 1500 : 100));
            return { n: payload.n };
          },
        }),
    );
    for (const w of workers) w.start();

    // Submitters: through the Service (round robin over the endpoints).
    const statuses: number[] = [];
    const connectionErrors: string[] = [];
    const submitted: string[] = [];
    let submitting = true;
    let next = 0;
    const submitter = (async () => {
      for (let n = 0; submitting; n++) {
        const url = endpoints[next++ % endpoints.length];
        try {
          const res = await fetch(`${url}/jobs`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ capability, submitted_by: 'k8s-replay', submitted_payload: { n } }),
          });
          statuses.push(res.status);
          if (res.status === 201) submitted.push(((await res.json()) as CreateJobResponse).id);
        } catch (err) {
          connectionErrors.push(`${url}: ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 30));
      }
    })();

    const drains: { pod: string; code: number; output: string; ms: number }[] = [];
    /** Claims each old replica had handed out and not yet seen finish, as its preStop began. */
    const claimsAtDrain: number[] = [];
    try {
      await until('jobs flowing', () => submitted.length >= 20, 30_000);
      for (let i = 0; i < 3; i++) {
        // maxSurge 1: the successor first; maxUnavailable 0: the old pod goes
        // only once the successor is ready and has stayed ready minReadySeconds.
        const successor = await startPod(3 + i);
        await new Promise((r) => setTimeout(r, minReadyMs));
        expect((await fetch(`${successor.registry.url}/ready`)).status).toBe(200);
        endpoints.push(successor.registry.url);
        pods.push(successor);

        const old = pods[i] as Pod;
        const adminGet = async () =>
          (await (
            await fetch(`http://127.0.0.1:${old.adminPort}/admin/drain`, {
              headers: { authorization: `Bearer ${token}` },
            })
          ).json()) as { draining: boolean; live_claims_this_replica: number; replica_id: string };
        claimsAtDrain.push((await adminGet()).live_claims_this_replica);
        // Termination: the endpoint goes as the preStop hook starts…
        endpoints.splice(endpoints.indexOf(old.registry.url), 1);
        const started = Date.now();
        const script = (preStopScript ?? '').replaceAll(
          `http://127.0.0.1:${manifestAdminPort}`,
          `http://127.0.0.1:${old.adminPort}`,
        );
        expect(script).not.toBe(preStopScript);
        const preStop = await execFile(shell as string, [dashC as string, script], {
          env: {
            ...podEnv,
            PATH: `${bin}${delimiter}${process.env.PATH}`,
            MESH_ADMIN_TOKEN: token,
            NO_COLOR: '1',
          },
          timeout: graceMs,
        }).then(
          (r) => ({ code: 0, output: r.stdout + r.stderr }),
          (e: { code?: number; stdout?: string; stderr?: string }) => ({
            code: e.code ?? -1,
            output: `${e.stdout}${e.stderr}`,
          }),
        );
        drains.push({ pod: old.name, ...preStop, ms: Date.now() - started });
        expect(await adminGet()).toMatchObject({
          draining: true,
          live_claims_this_replica: 0,
          replica_id: old.name,
        });
        // …then SIGTERM: the graceful shutdown, within what is left of the grace period.
        const exit = await old.registry.stop(graceMs - (Date.now() - started));
        expect(exit).toEqual({ code: 0, signal: null });
      }
      submitting = false;
      await submitter;
      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      try {
        await until(
          'every submitted job completed',
          async () => {
            const [row] = await sql<{ n: number }[]>`
              select count(*)::int as n from jobs where capability = ${capability} and status = 'completed'`;
            return row?.n === submitted.length;
          },
          60_000,
        );
        const rows = await sql<{ id: string; status: string; claim_epoch: number }[]>`
          select id, status, claim_epoch::int as claim_epoch from jobs where capability = ${capability}`;
        expect(rows.map((r) => r.id).sort()).toEqual([...submitted].sort()); // nothing lost, nothing extra
        // Never claimed twice: no lease ran out, no reclaim, no second owner.
        expect(rows.filter((r) => r.status !== 'completed' || r.claim_epoch !== 1)).toEqual([]);
        const stopped = await sql<{ replica_id: string }[]>`
          select replica_id from registry_replicas where stopped_at is not null order by replica_id`;
        expect(stopped.map((r) => r.replica_id)).toEqual([
          'mesh-registry-old-0',
          'mesh-registry-old-1',
          'mesh-registry-old-2',
        ]);
      } finally {
        await sql.end();
      }
    } finally {
      submitting = false;
      await submitter;
      await Promise.all(workers.map((w) => w.stop()));
      rmSync(bin, { recursive: true, force: true });
    }

    for (const d of drains) {
      expect(d, d.output).toMatchObject({ code: 0 });
      expect(d.output).toMatch(/drained/);
      expect(d.ms).toBeLessThan(graceMs);
    }
    // The drains had claims in flight to wait for (the workers' failover position was on each in turn).
    expect(Math.max(...claimsAtDrain)).toBeGreaterThan(0);
    expect(statuses.filter((s) => s !== 201)).toEqual([]); // no 5xx, nor anything else
    expect(connectionErrors).toEqual([]); // the endpoint left before the process did
    expect(submitted.length).toBeGreaterThan(100);
    // The workers' view: each job settled once, committed; no write refused, nothing aborted.
    const settled = notices.filter((n) => n.type === 'settled');
    expect(settled.filter((n) => n.outcome !== 'completed' || !n.committed)).toEqual([]);
    expect(settled.map((n) => n.jobId).sort()).toEqual([...submitted].sort());
    expect(notices.filter((n) => n.type === 'refused' || n.type === 'aborted')).toEqual([]);
  }, 300_000);
});
