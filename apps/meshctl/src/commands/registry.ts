import type { DrainStatus, ReplicaInfo } from '@mesh/protocol';
import type { Argv, CommandModule } from 'yargs';
import { connectionFlags, type GlobalArgs } from '../cli/connection.ts';
import { type Context, run } from '../cli/context.ts';
import { CliError, ConnectionError, UsageError } from '../cli/errors.ts';
import { adminError, fetchFleet, replicaBase } from '../cli/fleet.ts';
import type { RegistryHttp } from '../cli/http.ts';
import { colors, formatAge, table } from '../cli/output.ts';

async function drainCall(http: RegistryHttp, method: 'GET' | 'POST' | 'DELETE', base?: string) {
  const res = await http.request(method, '/admin/drain', { admin: true, base });
  if (res.status !== 200) throw adminError(res);
  return { body: res.json<DrainStatus>(), res };
}

const stateOf = (r: ReplicaInfo) => (r.live ? 'live' : r.stopped_at ? 'stopped' : 'stale');
const colourState = (s: string) =>
  s === 'live' ? colors.green(s) : s === 'stale' ? colors.red(s) : colors.dim(s);
const shortBoot = (b: string | undefined) => (b ? b.slice(0, 8) : '-');
const since = (iso: string | null | undefined) => (iso ? formatAge(Date.now() - Date.parse(iso)) : '-');

/** `Registry:    …` / `Live claims: N`, meshctl 3.7.1's lines, then ours when present. */
function printDrainStatus(ctx: Context, body: DrainStatus): void {
  ctx.out.line(
    body.draining ? 'Registry:    DRAINING (new claims paused)' : 'Registry:    active (normal dispatch)',
  );
  ctx.out.line(`Live claims: ${body.live_claims}`);
  if (body.replica_id !== undefined) {
    ctx.out.line(
      `Replica:     ${body.replica_id} (version ${body.version ?? '?'}, boot ${shortBoot(body.boot_id)}; ` +
        `${body.live_claims_this_replica ?? '?'} of the live claims handed out here)`,
    );
    if (body.draining_since) ctx.out.line(`Draining:    since ${body.draining_since}`);
    if (body.fleet_draining) ctx.out.line('Fleet drain: in force (lift with: meshctl registry resume --all)');
  }
  const extra = body as { stale?: boolean; live_claims_age_seconds?: number | null };
  if (extra.stale) {
    ctx.out.warn(
      `the registry's database is unavailable: live claims are from its last read, ${extra.live_claims_age_seconds ?? '?'}s ago`,
    );
  }
}

interface AllArgs extends GlobalArgs {
  all?: boolean;
}

const allOption = <T>(y: Argv<T>, what: string) =>
  y.option('all', {
    type: 'boolean',
    describe: `${what} every replica of the fleet (discovered from the registry)`,
  });

// ─── registry status ─────────────────────────────────────────────────────────

interface FleetStatusRow extends ReplicaInfo {
  drain: DrainStatus | null;
  error: string | null;
}

async function fleetStatus(http: RegistryHttp) {
  const fleet = await fetchFleet(http);
  const rows: FleetStatusRow[] = await Promise.all(
    fleet.replicas.map(async (r) => {
      const base = replicaBase(r);
      if (!r.live || !base) return { ...r, drain: null, error: null };
      try {
        return { ...r, drain: (await drainCall(http, 'GET', base)).body, error: null };
      } catch (err) {
        return { ...r, drain: null, error: (err as Error).message };
      }
    }),
  );
  const liveClaims = rows.find((r) => r.drain)?.drain?.live_claims ?? null;
  return { fleet, rows, liveClaims };
}

const statusCommand: CommandModule<GlobalArgs, AllArgs> = {
  command: 'status',
  describe: 'Show whether the registry dispatches or drains, and its live claims',
  builder: (y) =>
    allOption(y, 'Show')
      .example('$0 registry status', 'one replica (the one --registry-url reaches)')
      .example('$0 registry status --all', 'every replica: state, drain, claims, version, boot')
      .example('$0 registry status --json', 'the raw /admin/drain body'),
  handler: run<AllArgs>(async (args, ctx) => {
    const http = ctx.registry();
    if (!args.all) {
      const { body, res } = await drainCall(http, 'GET');
      if (ctx.out.json) ctx.out.document(res.text);
      else printDrainStatus(ctx, body);
      return;
    }
    const { fleet, rows, liveClaims } = await fleetStatus(http);
    if (ctx.out.json) {
      ctx.out.printJson({
        fleet_draining: fleet.fleet_draining,
        fleet_draining_since: fleet.fleet_draining_since,
        live_claims: liveClaims,
        replicas: rows,
      });
      return;
    }
    ctx.out.line(
      table(
        ['REPLICA', 'STATE', 'DISPATCH', 'CLAIMED HERE', 'VERSION', 'SCHEMA', 'BOOT', 'LAST SEEN', 'URL'],
        rows.map((r) => [
          r.replica_id,
          colourState(stateOf(r)),
          r.error
            ? colors.red('unreachable')
            : r.drain
              ? r.drain.draining
                ? colors.yellow('DRAINING')
                : 'active'
              : r.draining
                ? 'draining'
                : '-',
          r.drain?.live_claims_this_replica?.toString() ?? '-',
          r.version,
          String(r.schema_version),
          shortBoot(r.boot_id),
          since(r.last_seen_at),
          replicaBase(r) ?? '-',
        ]),
      ),
    );
    ctx.out.line();
    const live = rows.filter((r) => r.live);
    ctx.out.line(
      `${live.length} live replica(s), ${live.filter((r) => r.drain?.draining).length} draining · ` +
        `fleet drain: ${fleet.fleet_draining ? `in force since ${fleet.fleet_draining_since}` : 'off'} · ` +
        `live claims (fleet): ${liveClaims ?? '?'}`,
    );
    for (const r of rows.filter((x) => x.error)) ctx.out.warn(`${r.replica_id}: ${r.error}`);
  }),
};

// ─── registry drain ──────────────────────────────────────────────────────────

interface DrainArgs extends AllArgs {
  wait?: boolean;
  'wait-timeout': number;
  'poll-interval': number;
  persist?: boolean;
  'own-claims'?: boolean;
}

/** One replica being watched during `drain --wait`. */
interface Watched {
  id: string;
  base: string | undefined;
  bootId: string | undefined;
  claims: number | undefined;
  failures: number;
  /** Why this replica's last answer cannot end the wait (database unreachable, claims in flight). */
  unsure?: string;
}

/** Consecutive failed polls after which a replica counts as gone. */
const maxPollFailures = 3;

/**
 * The wait of `drain --wait`: polls until no live claim remains, checking at
 * every round that every watched replica still drains under the same boot,
 * and (fleet mode) that no replica joined that dispatches.
 */
async function waitForDrained(
  ctx: Context,
  http: RegistryHttp,
  watched: Watched[],
  opts: {
    fleet: boolean;
    persist: boolean;
    /** Done when the watched replicas' own claims are 0, whatever other replicas hand out. */
    ownClaims: boolean;
    timeoutS: number;
    pollS: number;
    resumeCommand: string;
  },
): Promise<void> {
  const started = Date.now();
  const pollMs = Math.max(1, opts.pollS) * 1000;
  let liveClaims = Number.POSITIVE_INFINITY;
  const name = (w: Watched) => (opts.fleet ? `replica ${w.id}` : 'registry');
  const abort = (reason: string) =>
    new CliError(
      `${reason} — aborting wait; the drain is NOT known to be complete`,
      1,
      `Re-run \`meshctl registry drain --wait${opts.fleet ? ' --all' : ''}\` if you still intend to drain, or resume with: ${opts.resumeCommand}`,
    );
  for (let round = 0; ; round++) {
    if (round > 0) await new Promise((r) => setTimeout(r, pollMs));
    const elapsed = (Date.now() - started) / 1000;
    // One round: every watched replica's drain state, plus the fleet list.
    await Promise.all(
      watched.map(async (w) => {
        try {
          const { body } = await drainCall(http, 'GET', w.base);
          w.failures = 0;
          if (!body.draining) {
            throw abort(`${name(w)} is no longer draining (concurrent resume or restart?)`);
          }
          if (w.bootId && body.boot_id && body.boot_id !== w.bootId) {
            // Under a persisted fleet drain a restarted replica comes back
            // draining (it reads the drain before serving a claim): say so, go on.
            if (opts.persist) {
              ctx.out.warn(`${name(w)} restarted mid-wait; it came back draining (fleet drain in force)`);
              w.bootId = body.boot_id;
            } else
              throw abort(
                `${name(w)} restarted mid-wait (boot ${shortBoot(w.bootId)} → ${shortBoot(body.boot_id)})`,
              );
          }
          w.claims = body.live_claims_this_replica;
          liveClaims = body.live_claims;
          // During a database outage the replica answers from its last read
          // (stale) and claims may still be in flight: neither can end the wait.
          const extra = body as {
            stale?: boolean;
            live_claims_age_seconds?: number | null;
            claims_in_flight?: number;
          };
          w.unsure = extra.stale
            ? `database unreachable at ${w.id}; counts from ${extra.live_claims_age_seconds ?? '?'}s ago`
            : (extra.claims_in_flight ?? 0) > 0
              ? `${extra.claims_in_flight} claim(s) in flight at ${w.id}`
              : undefined;
        } catch (err) {
          if (!(err instanceof ConnectionError)) throw err;
          w.failures += 1;
          if (w.failures >= maxPollFailures) {
            if (!opts.persist) throw abort(`${name(w)} disappeared mid-wait (${err.message})`);
            ctx.out.warn(
              `${name(w)} is unreachable (${err.message}); the fleet drain holds if it comes back`,
            );
            watched.splice(watched.indexOf(w), 1);
          }
        }
      }),
    );
    if (watched.length === 0) throw abort('no replica of the fleet answers any more');
    if (opts.fleet) {
      const fleet = await fetchFleet(http).catch((err: Error) => {
        if (err instanceof ConnectionError) return undefined;
        throw err;
      });
      for (const r of fleet?.replicas ?? []) {
        const w = watched.find((x) => x.id === r.replica_id);
        if (w && !r.live) {
          if (opts.persist) {
            ctx.out.warn(
              `replica ${r.replica_id} left mid-wait (${stateOf(r)}); the fleet drain holds if it comes back`,
            );
            watched.splice(watched.indexOf(w), 1);
            continue;
          }
          throw abort(
            `replica ${r.replica_id} disappeared mid-wait (${stateOf(r)}, last seen ${r.last_seen_at})`,
          );
        }
        if (!w && r.live) {
          if (!r.draining) throw abort(`replica ${r.replica_id} joined mid-wait and is dispatching claims`);
          // Started under the fleet drain: watch it too.
          watched.push({
            id: r.replica_id,
            base: replicaBase(r) ?? undefined,
            bootId: r.boot_id,
            claims: undefined,
            failures: 0,
          });
        }
      }
    }
    const perReplica =
      opts.fleet || opts.ownClaims
        ? ` (${watched.map((w) => `${w.id}: ${w.failures ? '?' : (w.claims ?? '?')}`).join(', ')})`
        : '';
    const unsure = watched.flatMap((w) => (w.unsure ? [w.unsure] : []));
    const done =
      (opts.ownClaims ? watched.every((w) => w.claims === 0) : liveClaims === 0) && unsure.length === 0;
    const line = `  Live claims: ${liveClaims}${perReplica}${unsure.length ? ` · ${unsure.join('; ')}` : ''}`;
    const took = ` · ${Math.round((Date.now() - started) / 1000)}s elapsed`;
    if (done && watched.every((w) => w.failures === 0)) {
      ctx.out.progress(line, took);
      ctx.out.endProgress();
      return;
    }
    ctx.out.progress(line, took);
    if (opts.timeoutS > 0 && elapsed >= opts.timeoutS) {
      throw new CliError(
        `timed out after ${opts.timeoutS}s with ${liveClaims} live claim(s) still running; the registry is still draining (new claims paused)`,
        1,
        `To resume dispatch: ${opts.resumeCommand}`,
      );
    }
  }
}

const drainCommand: CommandModule<GlobalArgs, DrainArgs> = {
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
    if (!fleetMode) {
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
      return;
    }

    // Fleet mode: discover the replicas, drain each (or the fleet, persisted).
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
  }),
};

// ─── registry resume ─────────────────────────────────────────────────────────

const resumeCommand: CommandModule<GlobalArgs, AllArgs> = {
  command: 'resume',
  describe: 'Resume handing out claims (with --all: every replica, and lift the fleet drain)',
  builder: (y) =>
    allOption(y, 'Resume')
      .example('$0 registry resume', 'one replica')
      .example('$0 registry resume --all', 'lift the fleet drain and resume every live replica'),
  handler: run<AllArgs>(async (args, ctx) => {
    const http = ctx.registry();
    if (!args.all) {
      const { body, res } = await drainCall(http, 'DELETE');
      if (ctx.out.json) {
        ctx.out.document(res.text);
        return;
      }
      ctx.out.line('Registry resumed — job dispatch active');
      ctx.out.line(`  Live claims: ${body.live_claims}`);
      if (body.fleet_draining) {
        ctx.out.warn(
          'a fleet drain is in force: this replica keeps draining. Lift it with: meshctl registry resume --all',
        );
      }
      return;
    }
    const fleet = await fetchFleet(http);
    const lifted = await http.delete('/admin/fleet/drain', { admin: true });
    if (lifted.status !== 200) throw adminError(lifted);
    const results: { replica_id: string; draining: boolean | null; error: string | null }[] = [];
    for (const r of fleet.replicas.filter((x) => x.live)) {
      const base = replicaBase(r);
      try {
        if (!base) throw new UsageError('no URL recorded');
        const { body } = await drainCall(http, 'DELETE', base);
        results.push({ replica_id: r.replica_id, draining: body.draining, error: null });
      } catch (err) {
        results.push({ replica_id: r.replica_id, draining: null, error: (err as Error).message });
      }
    }
    if (ctx.out.json)
      ctx.out.printJson({ fleet_draining: false, lifted: fleet.fleet_draining, replicas: results });
    else {
      // Only a persisted fleet drain is "lifted"; in-memory drains are resumed.
      ctx.out.line(
        fleet.fleet_draining
          ? 'Fleet drain lifted — job dispatch active'
          : 'Every replica resumed — job dispatch active (no fleet drain was in force)',
      );
      for (const r of results) {
        ctx.out.line(
          `  ${r.replica_id.padEnd(20)} ${r.error ? colors.red(`failed: ${r.error}`) : r.draining ? 'still draining' : 'active'}`,
        );
      }
    }
    const failed = results.filter((r) => r.error);
    if (failed.length > 0) {
      throw new CliError(
        `could not resume ${failed.map((r) => r.replica_id).join(', ')}`,
        1,
        'Retry: meshctl registry resume --all',
      );
    }
  }),
};

// ─── registry replicas / forget ──────────────────────────────────────────────

const replicasCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'replicas',
  describe: 'List the replicas the registry records: live, stale (not heard from) or stopped',
  builder: (y) => y.example('$0 registry replicas', '').example('$0 registry replicas --json', ''),
  handler: run<GlobalArgs>(async (_args, ctx) => {
    const http = ctx.registry();
    const fleet = await fetchFleet(http);
    if (ctx.out.json) {
      ctx.out.printJson(fleet);
      return;
    }
    ctx.out.line(
      table(
        ['REPLICA', 'STATE', 'DRAINING', 'VERSION', 'SCHEMA', 'BOOT', 'UP', 'LAST SEEN', 'URL', 'ADMIN URL'],
        fleet.replicas.map((r) => [
          r.replica_id,
          colourState(stateOf(r)),
          r.draining ? colors.yellow('yes') : 'no',
          r.version,
          String(r.schema_version),
          shortBoot(r.boot_id),
          r.live ? since(r.started_at) : '-',
          since(r.last_seen_at),
          r.main_url ?? '-',
          r.admin_url ?? '-',
        ]),
      ),
    );
    ctx.out.line();
    const count = (s: string) => fleet.replicas.filter((r) => stateOf(r) === s).length;
    ctx.out.line(
      `${fleet.replicas.length} replica(s): ${count('live')} live, ${count('stale')} stale, ${count('stopped')} stopped · fleet drain: ${fleet.fleet_draining ? 'in force' : 'off'}`,
    );
    if (count('stale') > 0) {
      ctx.out.line(
        'Stale replicas were not heard from and never stopped cleanly; once gone for good: meshctl registry forget <replica>',
      );
    }
  }),
};

const forgetCommand: CommandModule<GlobalArgs, GlobalArgs & { replica: string }> = {
  command: 'forget <replica>',
  describe: 'Remove a stopped or stale replica from the fleet list (a live one is refused)',
  builder: (y) =>
    y
      .positional('replica', { type: 'string', demandOption: true, describe: 'replica id' })
      .example('$0 registry forget registry-b', ''),
  handler: run<GlobalArgs & { replica: string }>(async (args, ctx) => {
    const http = ctx.registry();
    const res = await http.delete(`/admin/replicas/${encodeURIComponent(args.replica)}`, { admin: true });
    if (res.status === 404) {
      // Not our "replica not found": the route is missing (MCP Mesh) or on the admin port.
      if (!res.text.includes('replica not found')) {
        await fetchFleet(http);
        throw adminError(res);
      }
      throw new CliError(
        `replica not found: ${args.replica}`,
        1,
        'List them with: meshctl registry replicas',
      );
    }
    if (res.status === 409)
      throw new CliError(`replica ${args.replica} is live; stop it before forgetting it`);
    if (res.status !== 200) throw adminError(res);
    if (ctx.out.json) ctx.out.document(res.text);
    else ctx.out.line(`Replica ${args.replica} forgotten`);
  }),
};

export const registryCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'registry',
  describe: 'Registry replicas: status, drain, resume, the fleet',
  builder: (y) =>
    y
      .command(statusCommand)
      .command(drainCommand)
      .command(resumeCommand)
      .command(replicasCommand)
      .command(forgetCommand)
      .demandCommand(1, 'name a registry command'),
  handler: () => {
    throw new UsageError('name a registry command');
  },
};
