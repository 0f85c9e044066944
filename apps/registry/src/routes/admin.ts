import type { DrainStatus } from '@mesh/protocol';
import { type Context, Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { ApiError, isDatabaseUnavailable } from '../errors.ts';
import { DatabaseTimeout, within } from '../services/status.ts';

/**
 * `/admin/drain`: every field present on our registry, plus, when the
 * database did not answer in time, what is stale: `live_claims*` come from the
 * replica's last successful read, `live_claims_age_seconds` old.
 */
type DrainBody = Required<DrainStatus> & {
  /** Claims that passed the drain gate and have not committed or failed yet. */
  claims_in_flight: number;
  stale?: true;
  live_claims_age_seconds?: number | null;
  database?: 'unreachable';
};

/**
 * How long an operator route waits on the database before answering from
 * what the replica knows (issue 20: an operator can see and drain a replica
 * exactly when the database is away).
 */
const operatorWaitMs = 500;
/** Fleet-wide views need the database; they fail (503) rather than hang when it is away. */
const fleetWaitMs = 5_000;

interface FleetBody {
  fleet_draining: boolean;
  since: string | null;
  live_claims: number;
  replicas: { replica_id: string; draining: boolean; boot_id: string }[];
}

/** How long a fleet drain waits for every live replica to acknowledge it. */
const fleetAckTimeoutMs = 15_000;

/**
 * Admin routes: MCP Mesh 3.7's `/admin/drain` (same body, plus our fields),
 * the fleet list and the fleet drain. Served on the admin port when one is
 * configured, else on the main port (3.7 behaviour).
 */
export const adminRoutes = new Hono<AppEnv>()
  .get('/admin/drain', async (c) => c.json(await drainBody(c)))
  .post('/admin/drain', async (c) => {
    const { gate } = c.get('deps');
    // The barrier: no new claim passes the gate from here on. Claims already in
    // flight may hang on an unreachable database: answer anyway, counting them
    // (`claims_in_flight`), so `drain --wait` keeps waiting until they are done.
    await within(gate.enter('local'), operatorWaitMs).catch(() => {});
    reportInBackground(c);
    return c.json(await drainBody(c));
  })
  .delete('/admin/drain', async (c) => {
    const { gate, replicas, status } = c.get('deps');
    // The fleet drain is read afresh: resuming this replica never lifts a fleet
    // drain in force, and never keeps one that was lifted. Without an answer in
    // time, the last fleet drain this replica saw stays applied.
    const synced = await within(replicas?.syncFleetDrain() ?? Promise.resolve(), operatorWaitMs).then(
      () => true,
      (err: Error) => {
        if (!isDatabaseUnavailable(err)) throw err;
        status?.failed(err, 'request');
        return false;
      },
    );
    gate.leave('local');
    reportInBackground(c);
    // Having waited once already, answer from what is known rather than wait again.
    return c.json({ ...(await drainBody(c, synced)), ...(synced ? {} : { fleet_draining_stale: true }) });
  })
  .get('/admin/replicas', async (c) => {
    const { replicas } = c.get('deps');
    if (!replicas) throw new ApiError('unavailable', 'replica registry not running');
    const [list, fleet] = await within(Promise.all([replicas.list(), replicas.fleetDrain()]), fleetWaitMs);
    return c.json({ replicas: list, fleet_draining: fleet.draining, fleet_draining_since: fleet.since });
  })
  .delete('/admin/replicas/:id', async (c) => {
    const { replicas } = c.get('deps');
    if (!replicas) throw new ApiError('unavailable', 'replica registry not running');
    const id = c.req.param('id');
    const outcome = await replicas.forget(id);
    if (outcome === 'not_found') throw new ApiError('not_found', `replica not found: ${id}`);
    if (outcome === 'live') {
      throw new ApiError('conflict', `replica ${id} is live; stop it before forgetting it`);
    }
    return c.json({ replica_id: id, forgotten: true });
  })
  .get('/admin/fleet/drain', async (c) => c.json(await fleetBody(c)))
  .post('/admin/fleet/drain', async (c) => {
    const { replicas } = c.get('deps');
    if (!replicas) throw new ApiError('unavailable', 'replica registry not running');
    const ack = await replicas.setFleetDrain(true, fleetAckTimeoutMs);
    return c.json({ ...(await fleetBody(c)), ...ack });
  })
  .delete('/admin/fleet/drain', async (c) => {
    const { replicas } = c.get('deps');
    if (!replicas) throw new ApiError('unavailable', 'replica registry not running');
    const ack = await replicas.setFleetDrain(false, fleetAckTimeoutMs);
    return c.json({ ...(await fleetBody(c)), ...ack });
  });

type Ctx = Context<AppEnv>;

/** Records the drain state in the replica's row; the heartbeat retries if the database is away. */
function reportInBackground(c: Ctx): void {
  const { replicas, logger } = c.get('deps');
  replicas
    ?.report()
    .catch((err: Error) => logger.debug({ err: err.message }, 'drain state not recorded yet'));
}

async function drainBody(c: Ctx, fresh = true): Promise<DrainBody> {
  const { gate, jobs, identity, replicas, status } = c.get('deps');
  const base = {
    draining: gate.draining,
    replica_id: identity.replicaId,
    boot_id: identity.bootId,
    version: identity.version,
    draining_since: gate.drainingSince?.toISOString() ?? null,
    fleet_draining: replicas ? gate.has('fleet') : false,
    claims_in_flight: gate.claimsInFlight,
  };
  // A fresh count (drain --wait decides on it); the last background read when
  // the database does not answer in time, marked stale.
  const read = fresh || !status?.values ? jobs.liveClaims() : Promise.reject(new DatabaseTimeout(0));
  const live = await within(read, status ? operatorWaitMs : 60_000).catch((err: Error) => {
    if (status?.values && isDatabaseUnavailable(err)) {
      status.failed(err, 'request');
      return undefined;
    }
    throw new ApiError('unavailable', `failed to count live claims: ${err.message}`);
  });
  if (live) {
    status?.succeeded();
    return { ...base, live_claims: live.total, live_claims_this_replica: live.mine };
  }
  const known = status?.values;
  return {
    ...base,
    live_claims: known?.live_claims ?? 0,
    live_claims_this_replica: known?.live_claims_this_replica ?? 0,
    stale: true,
    live_claims_age_seconds: status?.ageSeconds === null || !status ? null : +status.ageSeconds.toFixed(1),
    database: 'unreachable',
  };
}

async function fleetBody(c: Ctx): Promise<FleetBody> {
  const { replicas, jobs } = c.get('deps');
  if (!replicas) throw new ApiError('unavailable', 'replica registry not running');
  const [fleet, list, live] = await within(
    Promise.all([replicas.fleetDrain(), replicas.list(), jobs.liveClaims()]),
    fleetWaitMs,
  );
  return {
    fleet_draining: fleet.draining,
    since: fleet.since,
    live_claims: live.total,
    replicas: list
      .filter((r) => r.live)
      .map((r) => ({ replica_id: r.replica_id, draining: r.draining, boot_id: r.boot_id })),
  };
}
