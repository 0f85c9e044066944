/**
 * The job-log invariant checker shared by the rolling upgrade test and the
 * chaos suite: it reads the log of every worker notice the agents wrote
 * (`onNotice`: claimed, settled, refused…) and the jobs table at the end.
 */

/** One worker notice as an agent fixture logs it (a JSON line). */
export type JobLogRecord = Record<string, unknown> & { at: number; type: string };

/** The columns of a job row the checker needs. */
export interface JobLogRow {
  id: string;
  status: string;
  claim_epoch: number | string;
  attempt_count?: number | string;
  max_retries?: number | string;
}

export interface JobLogReport {
  /** Job id → the epochs under which a completion was committed (accepted by the registry). */
  committed: Map<string, number[]>;
  /** Jobs with more or fewer than one committed completion (every one should have exactly one). */
  twice: [string, number[]][];
  /** Jobs with no committed completion at all. */
  neverCommitted: string[];
  /** Committed completions under an epoch that is not the job's final one: a stale write accepted. */
  staleAccepted: [string, number[]][];
  /** Jobs whose attempts exceed their retry budget (attempt_count > max_retries + 1). */
  overBudget: JobLogRow[];
  /** Jobs not completed at the end. */
  notCompleted: JobLogRow[];
  /** Claims handed out (the `claimed` notices). */
  claims: number;
  /** Writes the registry refused as stale (`claim_superseded`): the fence working. */
  rejectedStale: number;
  /** Every violation, one line each (empty: the log is correct). */
  violations: string[];
}

/**
 * Checks: every job completed exactly once (one committed completion, under
 * the job's final claim epoch: no stale write accepted), attempts within the
 * retry budget, nothing left unfinished.
 */
export function checkJobLog(records: JobLogRecord[], jobs: JobLogRow[]): JobLogReport {
  const committed = new Map<string, number[]>();
  for (const r of records) {
    if (r.type === 'settled' && r.outcome === 'completed' && r.committed) {
      const list = committed.get(String(r.jobId)) ?? [];
      list.push(Number(r.claimEpoch));
      committed.set(String(r.jobId), list);
    }
  }
  const epochOf = new Map(jobs.map((j) => [j.id, Number(j.claim_epoch)]));
  const twice = [...committed].filter(([, epochs]) => epochs.length !== 1);
  const neverCommitted = jobs.filter((j) => !committed.has(j.id)).map((j) => j.id);
  const staleAccepted = [...committed].filter(([id, epochs]) => epochs.some((e) => epochOf.get(id) !== e));
  const overBudget = jobs.filter(
    (j) =>
      j.attempt_count !== undefined &&
      j.max_retries !== undefined &&
      Number(j.attempt_count) > Number(j.max_retries) + 1,
  );
  const notCompleted = jobs.filter((j) => j.status !== 'completed');
  const violations = [
    ...twice.map(([id, e]) => `job ${id} completed ${e.length} times (epochs ${e.join(', ')})`),
    ...neverCommitted.map((id) => `job ${id}: no committed completion in the log`),
    ...staleAccepted.map(
      ([id, e]) => `job ${id}: completion accepted under epoch ${e} (final ${epochOf.get(id)})`,
    ),
    ...overBudget.map((j) => `job ${j.id}: ${j.attempt_count} attempts, budget ${Number(j.max_retries) + 1}`),
    ...notCompleted.map((j) => `job ${j.id} ended ${j.status}`),
  ];
  return {
    committed,
    twice,
    neverCommitted,
    staleAccepted,
    overBudget,
    notCompleted,
    claims: records.filter((r) => r.type === 'claimed').length,
    rejectedStale: records.filter((r) => r.type === 'refused' && r.reason === 'claim_superseded').length,
    violations,
  };
}
