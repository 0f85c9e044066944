// The doctor: gathers facts once (registry, fleet, database: facts.ts) and
// judges them check by check, by theme: the registry and its fleet
// (fleet-checks.ts), the database (database-checks.ts), the jobs (jobs.ts,
// which upgrade verify reuses).

import { clockCheck, databaseCheck, schemaCheck } from './database-checks.ts';
import { type DoctorOptions, foreignRegistry, gather } from './facts.ts';
import { drainCheck, registryCheck, replicasCheck, staleCheck } from './fleet-checks.ts';
import {
  type JobFindings,
  jobsFromApi,
  jobsFromDatabase,
  noDb,
  orphanedClaimsCheck,
  stuckJobsCheck,
} from './jobs.ts';
import type { CheckResult } from './result.ts';

export type { DoctorOptions } from './facts.ts';
export type { CheckResult, CheckStatus, Problem } from './result.ts';

/** Runs every check. Never throws for what it finds: a check that cannot run says why. */
export async function runChecks(o: DoctorOptions): Promise<CheckResult[]> {
  const f = await gather(o);
  try {
    let found: JobFindings | string;
    const api = {
      http: o.http,
      health: f.health && { timestamp: f.health.body.timestamp, at: f.health.at },
      sweepIntervalMs: o.sweepIntervalMs,
    };
    // MCP Mesh 3.7 keeps other tables: judge its jobs through its API only.
    if (foreignRegistry(f)) found = await jobsFromApi(api);
    else if (f.db && f.schema && f.schema.applied.length > 0)
      found = await jobsFromDatabase(f.db.sql, o.sweepIntervalMs);
    else if (o.databaseUrl)
      found = f.schema
        ? 'skipped: the database holds no registry schema'
        : `skipped: ${f.dbError ?? 'the database is unreachable'}`;
    else if (f.health) found = await jobsFromApi(api);
    else found = `${noDb}, and the registry is unreachable`;
    return [
      registryCheck(f, o),
      replicasCheck(f),
      schemaCheck(f, o),
      databaseCheck(f, o),
      drainCheck(f, o),
      await clockCheck(f, o),
      staleCheck(f, o),
      stuckJobsCheck(found, o),
      orphanedClaimsCheck(found, o),
    ];
  } finally {
    await f.db?.close();
  }
}
