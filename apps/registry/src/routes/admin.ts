import type { DrainStatus } from '@mesh/protocol';
import { type Context, Hono } from 'hono';
import type { AppEnv } from '../app.ts';
import { ApiError } from '../errors.ts';

/** `/admin/drain`: every field present on our registry. */
type DrainBody = Required<DrainStatus>;

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
    const { gate, replicas } = c.get('deps');
    // The barrier: answers only once no claim can still commit on this replica.
    await gate.enter('local');
    await replicas?.report();
    return c.json(await drainBody(c));
  })
  .delete('/admin/drain', async (c) => {
    const { gate, replicas } = c.get('deps');
    // The fleet drain is read afresh: resuming this replica never lifts a fleet
    // drain in force, and never keeps one that was lifted.
    await replicas?.syncFleetDrain();
    gate.leave('local');
    await replicas?.report();
    return c.json(await drainBody(c));
  })
  .get('/admin/replicas', async (c) => {
    const { replicas } = c.get('deps');
    if (!replicas) throw new ApiError('unavailable', 'replica registry not running');
    const [list, fleet] = await Promise.all([replicas.list(), replicas.fleetDrain()]);
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

async function drainBody(c: Ctx): Promise<DrainBody> {
  const { gate, jobs, identity, replicas } = c.get('deps');
  const live = await jobs.liveClaims().catch((err: Error) => {
    throw new ApiError('unavailable', `failed to count live claims: ${err.message}`);
  });
  return {
    draining: gate.draining,
    live_claims: live.total,
    live_claims_this_replica: live.mine,
    replica_id: identity.replicaId,
    boot_id: identity.bootId,
    version: identity.version,
    draining_since: gate.drainingSince?.toISOString() ?? null,
    fleet_draining: replicas ? gate.has('fleet') : false,
  };
}

async function fleetBody(c: Ctx): Promise<FleetBody> {
  const { replicas, jobs } = c.get('deps');
  if (!replicas) throw new ApiError('unavailable', 'replica registry not running');
  const [fleet, list, live] = await Promise.all([replicas.fleetDrain(), replicas.list(), jobs.liveClaims()]);
  return {
    fleet_draining: fleet.draining,
    since: fleet.since,
    live_claims: live.total,
    replicas: list
      .filter((r) => r.live)
      .map((r) => ({ replica_id: r.replica_id, draining: r.draining, boot_id: r.boot_id })),
  };
}
