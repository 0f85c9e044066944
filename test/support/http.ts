/**
 * One JSON request to a registry process (or any URL): JSON bodies are
 * serialised, the answer's body parsed when there is one.
 *
 * @example const { status, body } = await call(r.url, 'POST', '/jobs/claim', { capability, instance_id });
 */
export async function call(base: string, method: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary wire bodies
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as any };
}
