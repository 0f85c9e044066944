/**
 * The fuzzer's catalogue: every route of apps/registry/src/routes/*.ts on the
 * listener that serves it, with its request fields (packages/protocol).
 */

export type FieldKind =
  | 'string'
  | 'id'
  | 'instance'
  | 'capability'
  | 'epoch'
  | 'int'
  | 'number'
  | 'json'
  | 'bool'
  | 'wait';
export type Template = Record<string, FieldKind | { array: Record<string, FieldKind> | FieldKind }>;

export interface Route {
  listener: 'main' | 'admin';
  method: string;
  /** `:id` is replaced by a generated id. */
  path: string;
  /** `:id` draws from these pools. */
  idFrom?: 'job' | 'agent' | 'replica';
  body?: Template;
  /** Query parameters the route reads. */
  query?: string[];
}

const jobQuery = ['status', 'limit', 'cursor', 'submitted_since', 'owner_instance_id', 'capability'];
const eventQuery = ['after', 'limit', 'types', 'instance_id', 'claim_epoch'];
const idEpoch = { id: 'id', claim_epoch: 'epoch' } as const;

/** Every route of apps/registry/src/routes/*.ts, with its request fields (packages/protocol). */
export const routes: Route[] = [
  { listener: 'main', method: 'GET', path: '/' },
  { listener: 'main', method: 'GET', path: '/health' },
  { listener: 'main', method: 'HEAD', path: '/health' },
  { listener: 'main', method: 'GET', path: '/ready' },
  { listener: 'main', method: 'GET', path: '/metrics' },
  {
    listener: 'main',
    method: 'POST',
    path: '/heartbeat',
    body: {
      agent_id: 'string',
      name: 'string',
      agent_type: 'string',
      namespace: 'string',
      version: 'string',
      runtime: 'string',
      http_host: 'string',
      http_port: 'int',
      tools: {
        array: {
          function_name: 'string',
          capability: 'capability',
          version: 'string',
          tags: { array: 'string' } as never,
          dependencies: { array: { capability: 'capability', tags: 'json', required: 'bool' } } as never,
          kwargs: 'json',
        },
      },
    },
  },
  { listener: 'main', method: 'HEAD', path: '/heartbeat/:id', idFrom: 'agent' },
  { listener: 'main', method: 'GET', path: '/agents' },
  { listener: 'main', method: 'DELETE', path: '/agents/:id', idFrom: 'agent' },
  {
    listener: 'main',
    method: 'POST',
    path: '/jobs',
    body: {
      capability: 'capability',
      submitted_by: 'string',
      submitted_payload: 'json',
      max_retries: 'int',
      max_duration: 'int',
      total_deadline: 'number',
      owner_instance_id: 'instance',
    },
  },
  { listener: 'main', method: 'GET', path: '/jobs', query: jobQuery },
  {
    listener: 'main',
    method: 'POST',
    path: '/jobs/claim',
    body: { capability: 'capability', instance_id: 'instance', max_jobs: 'int' },
  },
  {
    listener: 'main',
    method: 'POST',
    path: '/jobs/batch',
    body: {
      instance_id: 'instance',
      deltas: {
        array: {
          ...idEpoch,
          status: 'string',
          progress: 'number',
          progress_message: 'string',
          result: 'json',
          error: 'string',
          recv_cursor: 'json',
        },
      },
    },
  },
  {
    listener: 'main',
    method: 'POST',
    path: '/jobs/leases',
    body: { instance_id: 'instance', leases: { array: idEpoch } },
  },
  {
    listener: 'main',
    method: 'POST',
    path: '/jobs/signals',
    body: { instance_id: 'instance', jobs: { array: idEpoch }, wait: 'wait' },
  },
  { listener: 'main', method: 'GET', path: '/jobs/:id', idFrom: 'job' },
  {
    listener: 'main',
    method: 'POST',
    path: '/jobs/:id/release',
    idFrom: 'job',
    body: { instance_id: 'instance', reason: 'string', claim_epoch: 'epoch' },
  },
  { listener: 'main', method: 'POST', path: '/jobs/:id/cancel', idFrom: 'job', body: { reason: 'string' } },
  {
    listener: 'main',
    method: 'POST',
    path: '/jobs/:id/events',
    idFrom: 'job',
    body: { type: 'string', payload: 'json', trace_context: 'json' },
  },
  { listener: 'main', method: 'GET', path: '/jobs/:id/events', idFrom: 'job', query: eventQuery },
  { listener: 'admin', method: 'GET', path: '/admin/drain' },
  { listener: 'admin', method: 'POST', path: '/admin/drain' },
  { listener: 'admin', method: 'DELETE', path: '/admin/drain' },
  { listener: 'admin', method: 'GET', path: '/admin/replicas' },
  { listener: 'admin', method: 'DELETE', path: '/admin/replicas/:id', idFrom: 'replica' },
  { listener: 'admin', method: 'GET', path: '/admin/fleet/drain' },
  { listener: 'admin', method: 'POST', path: '/admin/fleet/drain' },
  { listener: 'admin', method: 'DELETE', path: '/admin/fleet/drain' },
  { listener: 'admin', method: 'POST', path: '/jobs/:id/reclaim', idFrom: 'job' },
];
