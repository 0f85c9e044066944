import fc from 'fast-check';
import { mainPortRoutes } from '../../../apps/registry/src/access.ts';
import { describeRequest, type RawRequest } from './raw-http.ts';
import { type FieldKind, type Route, routes, type Template } from './routes.ts';

/**
 * Generators of hostile requests for every route of the registry's two
 * listeners. Each route has a body template of its real fields (from
 * packages/protocol); a generated body keeps, drops, retypes or poisons each
 * field and adds unknown ones, then is encoded as JSON or as broken bytes.
 */

/** Ids that exist in the fixture, filled in once the fixture is stored. */
export interface Pools {
  jobIds: string[];
  agentIds: string[];
  instanceIds: string[];
  capabilities: string[];
  epochs: number[];
  replicaIds: string[];
  /** Tokens the registry accepts, by role. */
  tokens: { admin: string; agent: string; client: string };
}

const nested = (depth: number, open: string, close: string, leaf = '1') =>
  `${open.repeat(depth)}${leaf}${close.repeat(depth)}`;

/** Strings that break naive handling: NUL, lone surrogates, control bytes, very long, unicode. */
const nastyString = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    'a\u0000b',
    '\uD800',
    '\uDFFFx',
    '\u202E',
    '%00',
    '../../etc/passwd',
    "'; drop table jobs; --",
    '{"a":1}',
    '127.0.0.1:1/admin/fleet/drain#',
  ),
  fc.integer({ min: 200, max: 70_000 }).map((n) => 'x'.repeat(n)),
);

const hugeNumbers = fc.constantFrom(
  -1,
  0,
  -0,
  1.5,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53 + 2,
  -(2 ** 63),
  1e308,
  -1e308,
  5e-324,
  Number.MAX_SAFE_INTEGER,
);

/** Any JSON value, including deep and wide ones. */
const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.integer({ min: 10, max: 400 }).map((d) => JSON.parse(nested(d, '[', ']'))) },
  { weight: 1, arbitrary: fc.array(fc.constant({}), { minLength: 300, maxLength: 3000 }) },
);

/** A value for a field: usually of the right kind (from the fixture's pools), else hostile. */
function fieldValue(kind: FieldKind, pools: Pools): fc.Arbitrary<unknown> {
  const right: Record<FieldKind, fc.Arbitrary<unknown>> = {
    string: fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.constantFrom('fuzz-agent', 'completed', 'failed', 'working'),
    ),
    id: fc.oneof(fc.constantFrom(...pools.jobIds), fc.uuid(), fc.constant('not-a-uuid')),
    instance: fc.constantFrom(...pools.instanceIds),
    capability: fc.constantFrom(...pools.capabilities),
    epoch: fc.oneof(fc.constantFrom(...pools.epochs), fc.integer({ min: 0, max: 10 })),
    int: fc.integer({ min: 0, max: 5 }),
    number: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 4_102_444_800 })),
    json: fc.jsonValue({ maxDepth: 2 }),
    bool: fc.boolean(),
    // A positive `wait` would park the request for up to a minute: only 0 and values refused.
    wait: fc.constantFrom(0, -1, 1.5, '1', null, -1e308),
  };
  if (kind === 'wait') return right.wait;
  const wrong = fc.oneof(
    nastyString,
    hugeNumbers,
    fc.constant(null),
    fc.boolean(),
    fc.constant([]),
    fc.constant({}),
    fc.constant(['a', 1]),
    anyJson,
  );
  return fc.oneof({ weight: 3, arbitrary: right[kind] }, { weight: 1, arbitrary: wrong });
}

function templateValue(t: Template[string], pools: Pools): fc.Arbitrary<unknown> {
  if (typeof t === 'string') return fieldValue(t, pools);
  const item =
    typeof t.array === 'string' ? fieldValue(t.array, pools) : objectFrom(t.array as Template, pools);
  return fc.oneof(
    { weight: 4, arbitrary: fc.array(item, { maxLength: 4 }) },
    // Duplicate entries (the same id twice in a batch) and batches past the bounds.
    { weight: 1, arbitrary: item.chain((x) => fc.integer({ min: 2, max: 3 }).map((n) => Array(n).fill(x))) },
    // Batches past the bounds (1,000 deltas or leases, 256 tools), of small items.
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.integer({ min: 250, max: 1100 }),
          fc.constantFrom<unknown>({}, 'x', { id: pools.jobIds[0] }),
        )
        .map(([n, x]) => Array(n).fill(x)),
    },
    { weight: 1, arbitrary: fieldValue('string', pools) },
  );
}

/** An object with some of the template's fields (right or wrong) and perhaps unknown ones. */
function objectFrom(template: Template, pools: Pools): fc.Arbitrary<Record<string, unknown>> {
  const model = Object.fromEntries(Object.entries(template).map(([k, t]) => [k, templateValue(t, pools)]));
  return fc
    .tuple(
      fc.record(model, { requiredKeys: [] }),
      fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constant('__proto__')), anyJson, { maxKeys: 2 }),
      fc.boolean(),
    )
    .map(([known, extra, withExtra]) => (withExtra ? { ...extra, ...known } : known));
}

const contentTypes = fc.constantFrom(
  'application/json',
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=latin1',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  '',
  '*/*; q=\u00ff',
);

/** The body's bytes: JSON of a generated object, or something no JSON parser should accept. */
function bodyBytes(route: Route, pools: Pools): fc.Arbitrary<Buffer | undefined> {
  const json = (route.body ? objectFrom(route.body, pools) : fc.constant({})).map((o) =>
    Buffer.from(JSON.stringify(o)),
  );
  const broken = fc.oneof(
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
    json.map((b) => b.subarray(0, Math.max(0, b.length - 2))),
    // Invalid UTF-8 inside a JSON string: a lone continuation byte, an overlong NUL, a surrogate's encoding.
    fc
      .constantFrom([0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x00])
      .chain((bad) =>
        json.map((b) => {
          const at = b.indexOf('"', 1);
          return at < 0
            ? Buffer.from(bad)
            : Buffer.concat([b.subarray(0, at), Buffer.from(bad), b.subarray(at)]);
        }),
      ),
    fc.integer({ min: 100, max: 20_000 }).map((d) => Buffer.from(`{"a":${nested(d, '[', ']')}}`)),
    fc.integer({ min: 100, max: 20_000 }).map((d) => Buffer.from(nested(d, '{"a":', '}'))),
    fc
      .constantFrom('null', '[]', '"x"', '1', 'true', '{"a":NaN}', '{"a":1e999}', '{"a":1,"a":{}}', '{,}')
      .map((s) => Buffer.from(s)),
    json.map((b) => Buffer.concat([b, Buffer.from('\u0000garbage')])),
  );
  const oversized = fc
    .integer({ min: 1024 * 1024 - 16, max: 1024 * 1024 + 4096 })
    .map((n) => Buffer.from(`{"capability":"${'a'.repeat(n)}"}`));
  return fc.oneof(
    { weight: 12, arbitrary: json },
    { weight: 6, arbitrary: broken },
    { weight: 1, arbitrary: oversized },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
}

/**
 * Bodies past the limit go with a Content-Length: the registry reads and drops
 * them before its 413. A chunked one is refused mid-stream, and the answer can
 * be lost to the connection reset (a known gap, in docs/operations.md).
 */
function framingFor(body: Buffer | undefined): fc.Arbitrary<RawRequest['framing']> {
  if (body && body.length > 1024 * 1024) return fc.constant('length');
  return fc.constantFrom<RawRequest['framing']>('length', 'length', 'length', 'chunked', 'none');
}

function idValue(route: Route, pools: Pools): fc.Arbitrary<string> {
  const known =
    route.idFrom === 'agent' ? pools.agentIds : route.idFrom === 'replica' ? pools.replicaIds : pools.jobIds;
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...known) },
    { weight: 1, arbitrary: fc.uuid() },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        'x',
        '%00',
        '%FF',
        '%C0%80',
        '%',
        '%zz',
        '..%2F..%2Fadmin',
        '%2e%2e',
        'a%20b',
        '%E2%80%AE',
        encodeURIComponent('\u0000'),
        `${'0'.repeat(8)}-0000-0000-0000-${'0'.repeat(12)}`,
        'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF',
      ),
    },
    { weight: 1, arbitrary: fc.integer({ min: 300, max: 9000 }).map((n) => 'a'.repeat(n)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 10 }).map(encodeURIComponent) },
  );
}

const queryValue = fc.oneof(
  fc.constantFrom('', '0', '1', '-1', '200', '201', '1e3', '0x10', '99999999999999999999', 'NaN', ' 5', '5 '),
  fc.constantFrom('working', 'completed,failed', ',,,', 'bogus', '%00', '%FF', '%', '%E0%A4%A', '+', '%20'),
  fc.string({ maxLength: 10 }).map(encodeURIComponent),
  fc.base64String({ maxLength: 40 }),
  fc.integer({ min: 300, max: 9000 }).map((n) => 'q'.repeat(n)),
);

function queryString(route: Route): fc.Arbitrary<string> {
  // `wait` is never sent: a valid one would park the request for up to a minute.
  const names = fc.oneof(fc.constantFrom(...(route.query ?? ['x'])), fc.constantFrom('x', '', '%00', 'a[b]'));
  return fc
    .array(fc.tuple(names, queryValue, fc.boolean()), { maxLength: 4 })
    .map((pairs) =>
      pairs.length === 0 ? '' : `?${pairs.map(([k, v, eq]) => (eq ? `${k}=${v}` : k)).join('&')}`,
    );
}

/** Headers: content type, tokens (none, wrong, right), identity headers, and malformed ones. */
function headerLines(pools: Pools): fc.Arbitrary<[string, string][]> {
  const auth = fc.oneof(
    fc.constantFrom(
      '',
      'Bearer',
      'Bearer ',
      'Basic YTpi',
      'Bearer wrong',
      'bearer x\u00ff',
      `Bearer ${'t'.repeat(5000)}`,
    ),
    fc.constantFrom(...Object.values(pools.tokens)).map((t) => `Bearer ${t}`),
  );
  const one = fc.oneof(
    // A second Authorization header: joined with the first, it matches no token (401).
    { weight: 1, arbitrary: auth.map((v): [string, string] => ['Authorization', v]) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom(
            'Idempotency-Key',
            'X-Mesh-Instance-Id',
            'X-Mesh-Claim-Epoch',
            'X-Mesh-Sdk-Version',
            'X-Trace-Id',
            'X-Request-Id',
            'Accept',
            'Expect',
          ),
          fc.oneof(queryValue, fc.constantFrom('"quoted"', '\u00ff\u00fe', '100-continue', '1'.repeat(300))),
        )
        .map(([n, v]): [string, string] => [n, v]),
    },
    // Bytes HTTP forbids in headers, names with spaces, a second Content-Length.
    {
      weight: 1,
      arbitrary: fc.constantFrom<[string, string]>(
        ['X-Bad', 'a\u0000b'],
        ['X-Bad', '\u007f'],
        ['Bad Name', 'x'],
        ['X-Long', 'v'.repeat(20_000)],
        ['Content-Length', '5'],
        ['Content-Length', '-1'],
        ['Transfer-Encoding', 'gzip'],
        ['Content-Encoding', 'gzip'],
      ),
    },
  );
  return fc.array(one, { maxLength: 3 });
}

const otherMethods = fc.constantFrom(
  'GET',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'OPTIONS',
  'HEAD',
  'TRACE',
  'FUZZ',
);

/** The tokens that open a route (access.ts): its roles' and the admin's; admin routes take the admin's only. */
function tokensFor(route: Route, pools: Pools): string[] {
  const rule = mainPortRoutes.find(
    (r) => r.method === route.method && r.path.test(route.path.replace(':id', 'x')),
  );
  if (route.listener === 'admin' || !rule) return [pools.tokens.admin];
  return [...rule.roles.map((role) => pools.tokens[role]), pools.tokens.admin];
}

export interface FuzzCase {
  listener: 'main' | 'admin';
  request: RawRequest;
}

/** fast-check prints a case (the seed's counterexample, shrunk) as the request's text, not its Buffer. */
const printable = (c: FuzzCase): FuzzCase =>
  Object.assign(c, { [fc.toStringMethod]: () => `${c.listener} port:\n${describeRequest(c.request)}` });

/** One generated request for one of the routes. */
export function fuzzCase(pools: Pools): fc.Arbitrary<FuzzCase> {
  return fc.constantFrom(...routes).chain((route) =>
    fc
      .record({
        method: fc.oneof(
          { weight: 9, arbitrary: fc.constant(route.method) },
          { weight: 1, arbitrary: otherMethods },
        ),
        id: idValue(route, pools),
        query: queryString(route),
        body: bodyBytes(route, pools).chain((body) => framingFor(body).map((framing) => ({ body, framing }))),
        contentType: contentTypes,
        headers: headerLines(pools),
        // Usually a token the registry accepts (of some role), so that requests get past the
        // token check to the routes; else none or a broken one.
        auth: fc.oneof(
          { weight: 6, arbitrary: fc.constantFrom(...tokensFor(route, pools)).map((t) => `Bearer ${t}`) },
          { weight: 1, arbitrary: fc.constant(undefined) },
          {
            weight: 1,
            arbitrary: fc.constantFrom('Bearer', 'Bearer \u00ff', `Bearer ${'x'.repeat(300)}`, 'Token abc'),
          },
        ),
        listener: fc.oneof(
          { weight: 19, arbitrary: fc.constant(route.listener) },
          { weight: 1, arbitrary: fc.constantFrom<'main' | 'admin'>('main', 'admin') },
        ),
      })
      .map(({ method, id, query, body: { body, framing }, contentType, headers, auth, listener }) => {
        // A declared length with no body sent is an incomplete request: the server rightly waits for the rest.
        const framed =
          framing === 'none' ? headers.filter(([n, v]) => !(n === 'Content-Length' && v === '5')) : headers;
        const lines: [string, string][] = [
          ...(contentType ? [['Content-Type', contentType] as [string, string]] : []),
          ...(auth ? [['Authorization', auth] as [string, string]] : []),
          ...framed,
        ];
        const bodyless = method === 'GET' || method === 'HEAD';
        return printable({
          listener,
          request: {
            method,
            target: `${route.path.replace(':id', id)}${query}`,
            headers: lines,
            body: bodyless ? undefined : body,
            framing: bodyless ? 'none' : framing,
          },
        });
      }),
  );
}
