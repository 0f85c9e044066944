// `meshctl registry drain`: stop handing out new claims on one replica, on
// every replica (--all) or on the fleet through the database (--persist);
// with --wait, return once no live claim remains.

import type { CommandModule } from 'yargs';
import { connectionFlags, type GlobalArgs } from '../../cli/connection.ts';
import { type Context, run } from '../../cli/context.ts';
import { CliError, ConnectionError, UsageError } from '../../cli/errors.ts';
import { adminError, fetchFleet, replicaBase } from '../../cli/fleet.ts';
import type { RegistryHttp } from '../../cli/http.ts';
import { type DrainWaitOptions, type Watched, waitForDrained } from './drain-wait.ts';
import { type AllArgs, allOption, drainCall } from './shared.ts';

interface DrainArgs extends AllArgs {
  wait?: boolean;
  'wait-timeout': number;
  'poll-interval': number;
  persist?: boolean;
  'own-claims'?: boolean;
}

export const drainCommand: CommandModule<GlobalArgs, DrainArgs> = {
  command: 'drain',
  describe: 'Stop handing out new claims; with --wait, return once no live claim remains',
  builder: (y) =>
    allOption(y, 'Drain')
      .option('wait', {
        type: 'boolean',
        describe: 'Wait until no live claim remains (safe to upgrade/restart)',
      })
      .option('wait-timeout', {
        type: 'number',
        default: 0,
        describe: 'Give up waiting after this many seconds (0 = wait forever); the registry stays draining',
      })
      .option('poll-interval', {
        type: 'number',
        default: 2,
        describe: 'Seconds between polls while waiting (min 1)',
      })
      .option('persist', {
        type: 'boolean',
        describe:
          'Drain the whole fleet through the database (implies --all): survives restarts and applies to replicas that start meanwhile',
      })
      .option('own-claims', {
        type: 'boolean',
        describe:
          "With --wait: wait only for the claims this replica handed out (live_claims_this_replica), not every live claim: a rolling upgrade's step while the other replicas dispatch",
      })
      .example('$0 registry drain --wait', 'one replica (meshctl 3.7.1 behaviour)')
      .example('$0 registry drain --all --wait', 'every live replica, each through its admin URL')
      .example(
        '$0 registry drain --persist --wait --wait-timeout 600',
        'a fleet drain that outlives restarts',
      )
      .example(
        '$0 registry drain --registry-url http://registry-a:8001 --wait --own-claims',
        'one replica of a rolling upgrade: until its own claims are done',
      )
      .check((a) => {
        if (a['wait-timeout'] < 0 || !Number.isFinite(a['wait-timeout']))
          throw new UsageError('--wait-timeout must be >= 0');
        if (!(a['poll-interval'] > 0)) throw new UsageError('--poll-interval must be > 0');
        if (a['own-claims'] && !a.wait) throw new UsageError('--own-claims goes with --wait');
        return true;
      }),
  handler: run<DrainArgs>(async (args, ctx) => {
    const http = ctx.registry();
    const fleetMode = Boolean(args.all || args.persist);
    const resumeCommand = `meshctl registry resume${fleetMode ? ' --all' : ''}${connectionFlags(args)}`;
    const ownClaims = Boolean(args['own-claims']);
    const waitOpts = {
      fleet: fleetMode,
      persist: Boolean(args.persist),
      ownClaims,
      timeoutS: args['wait-timeout'],
      pollS: args['poll-interval'],
      resumeCommand,
    };
    if (!fleetMode) await drainOne(ctx, http, args, waitOpts);
    else await drainFleet(ctx, http, args, waitOpts);
  }),
};

/** The replica --registry-url reaches (meshctl 3.7.1's drain), its wait judged on it alone. */
async function drainOne(ctx: Context, http: RegistryHttp, args: DrainArgs, waitOpts: DrainWaitOptions) {
  const { ownClaims } = waitOpts;
  const { body, res } = await drainCall(http, 'POST');
  if (ctx.out.json && !args.wait) {
    ctx.out.document(res.text);
    return;
  }
  ctx.out.line('Registry draining — new job claims paused');
  ctx.out.line(`  Live claims: ${body.live_claims}`);
  if (!args.wait) {
    if (body.live_claims > 0) {
      ctx.out.line(
        `Note: ${body.live_claims} job(s) still running; poll \`meshctl registry status\` or re-run with --wait`,
      );
    }
    return;
  }
  if (ownClaims && body.live_claims_this_replica === undefined) {
    throw new CliError(
      `the registry at ${http.url} does not report its own claims (live_claims_this_replica): it is not a mesh-registry (MCP Mesh 3.7?)`,
      1,
      'Wait for every live claim instead: drop --own-claims.',
    );
  }
  const waiting = ownClaims ? (body.live_claims_this_replica ?? 0) : body.live_claims;
  // A stale answer (database unreachable) or claims in flight cannot say "safe" either.
  const unsure = body as { stale?: boolean; claims_in_flight?: number };
  if (waiting > 0 || !body.draining || unsure.stale || (unsure.claims_in_flight ?? 0) > 0) {
    const watched: Watched[] = [
      {
        id: body.replica_id ?? 'registry',
        base: undefined,
        bootId: body.boot_id,
        claims: body.live_claims_this_replica,
        failures: 0,
      },
    ];
    await waitForDrained(ctx, http, watched, waitOpts);
  }
  if (ctx.out.json) {
    ctx.out.printJson({
      drained: true,
      replicas: [body.replica_id ?? 'registry'],
      own_claims: ownClaims,
    });
    return;
  }
  ctx.out.line(
    ownClaims
      ? `All jobs claimed through ${body.replica_id ?? 'this replica'} drained — safe to upgrade/restart it`
      : 'All jobs drained — safe to upgrade/restart',
  );
}

/** Fleet mode: discover the replicas, drain each (or the fleet, persisted). */
async function drainFleet(ctx: Context, http: RegistryHttp, args: DrainArgs, waitOpts: DrainWaitOptions) {
  const { resumeCommand } = waitOpts;
  const fleet = await fetchFleet(http);
  const live = fleet.replicas.filter((r) => r.live);
  if (live.length === 0) throw new CliError('the registry lists no live replica');
  const watched: Watched[] = [];
  const results: { replica_id: string; draining: boolean; live_claims_this_replica: number | null }[] = [];
  if (args.persist) {
    const res = await http.post('/admin/fleet/drain', { admin: true });
    if (res.status !== 200) throw adminError(res);
    const body = res.json<{ acknowledged: boolean; pending: string[]; live_claims: number }>();
    ctx.out.line(`Fleet draining (persisted in the database) — new job claims paused on every replica`);
    if (!body.acknowledged) {
      ctx.out.warn(
        `not yet acknowledged by ${body.pending.join(', ')} (they pick it up at their next heartbeat)`,
      );
    }
  }
  for (const r of live) {
    const base = replicaBase(r);
    if (!base) throw new CliError(`replica ${r.replica_id} records no URL; cannot reach it`);
    try {
      const { body } = await drainCall(http, args.persist ? 'GET' : 'POST', base);
      if (body.boot_id && body.boot_id !== r.boot_id) {
        throw new CliError(
          `replica ${r.replica_id} restarted while being drained (boot changed)`,
          1,
          `Re-run the drain.`,
        );
      }
      watched.push({
        id: r.replica_id,
        base,
        bootId: r.boot_id,
        claims: body.live_claims_this_replica,
        failures: 0,
      });
      results.push({
        replica_id: r.replica_id,
        draining: body.draining,
        live_claims_this_replica: body.live_claims_this_replica ?? null,
      });
      if (!ctx.out.json) {
        ctx.out.line(
          `  ${r.replica_id.padEnd(20)} ${body.draining ? 'draining' : 'not draining yet'}  (claimed here: ${body.live_claims_this_replica ?? '?'}, at ${base})`,
        );
      }
    } catch (err) {
      if (err instanceof ConnectionError) {
        throw new CliError(
          `could not drain replica ${r.replica_id} at ${base}: ${err.message}`,
          1,
          `Replicas drained so far stay draining. --persist drains through the database instead; resume with: ${resumeCommand}`,
        );
      }
      throw err;
    }
  }
  for (const r of fleet.replicas.filter((x) => !x.live && !x.stopped_at)) {
    ctx.out.warn(
      `replica ${r.replica_id} is stale (last seen ${r.last_seen_at}) and was not drained${args.persist ? '' : '; if it comes back it dispatches (use --persist)'}`,
    );
  }
  if (!args.persist)
    ctx.out.line(`Registry fleet draining — new job claims paused on ${live.length} replica(s)`);
  if (args.wait) {
    await waitForDrained(ctx, http, watched, waitOpts);
    if (ctx.out.json) {
      ctx.out.printJson({ drained: true, replicas: watched.map((w) => w.id) });
      return;
    }
    ctx.out.line('All jobs drained fleet-wide — safe to upgrade/restart');
  } else if (ctx.out.json) {
    ctx.out.printJson({ draining: true, persisted: Boolean(args.persist), replicas: results });
  }
}
