import type { TestProject } from 'vitest/node';
import { prepareTemplate } from './databases.ts';
import { startTestPostgres, type TestPostgres } from './postgres.ts';
import type {} from './provided.ts';

let server: TestPostgres | undefined;

/** Vitest global setup: one PostgreSQL server per test run, with a migrated template. */
export async function setup(project: TestProject): Promise<void> {
  const started = Date.now();
  // Test files that install the workspace's packed release share one pack per run.
  process.env.MESH_RELEASE_RUN ??= `${process.pid}-${started}`;
  server = await startTestPostgres();
  await prepareTemplate(server.adminUrl);
  const where = new URL(server.adminUrl);
  console.log(
    `[testkit] PostgreSQL for this run: ${server.source}, ${server.serverVersion} at ${where.host} ` +
      `(ready in ${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );
  project.provide('meshPg', {
    adminUrl: server.adminUrl,
    source: server.source,
    serverVersion: server.serverVersion,
  });
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
