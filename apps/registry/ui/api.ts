import type { DashboardSnapshot } from '@mesh/protocol';

/**
 * The admin token lives in sessionStorage (this tab, until it closes) and
 * travels only in the Authorization header: never in a URL, never in a
 * cookie, so no other site can make the browser send it (no CSRF).
 */
const tokenKey = 'mesh-dashboard-token';

export const token = {
  get: (): string => sessionStorage.getItem(tokenKey) ?? '',
  set: (t: string) => sessionStorage.setItem(tokenKey, t),
  clear: () => sessionStorage.removeItem(tokenKey),
};

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function authHeaders(): Record<string, string> {
  const t = token.get();
  return t ? { authorization: `Bearer ${t}` } : {};
}

/** A JSON call to the dashboard API; state changes are POST or DELETE only. */
export async function api<T>(
  path: string,
  method: 'GET' | 'POST' | 'DELETE' = 'GET',
  body?: unknown,
): Promise<T> {
  const res = await fetch(`/ui/api${path}`, {
    method,
    headers: { ...authHeaders(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? null : JSON.stringify(body),
    cache: 'no-store',
  });
  const text = await res.text();
  if (!res.ok) {
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {}
    throw new HttpError(res.status, message);
  }
  return JSON.parse(text) as T;
}

/**
 * The live feed: server-sent events read with fetch, since EventSource cannot
 * send the Authorization header. Reconnects (bounded backoff) until `stop()`.
 */
export function openStream(handlers: {
  snapshot: (s: DashboardSnapshot) => void;
  state: (s: 'connecting' | 'live' | 'unauthorized' | 'down') => void;
}): () => void {
  let stopped = false;
  let controller: AbortController | undefined;
  let delayMs = 500;
  const run = async () => {
    while (!stopped) {
      controller = new AbortController();
      handlers.state('connecting');
      try {
        const res = await fetch('/ui/api/stream', { headers: authHeaders(), signal: controller.signal });
        if (res.status === 401) {
          handlers.state('unauthorized');
          return;
        }
        if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
        handlers.state('live');
        delayMs = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end = buffer.indexOf('\n\n');
          while (end >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = frame
              .split('\n')
              .filter((l) => l.startsWith('data:'))
              .map((l) => l.slice(5).replace(/^ /, ''))
              .join('\n');
            if (data) handlers.snapshot(JSON.parse(data) as DashboardSnapshot);
            end = buffer.indexOf('\n\n');
          }
        }
      } catch {
        if (stopped) return;
      }
      handlers.state('down');
      await new Promise((r) => setTimeout(r, delayMs));
      delayMs = Math.min(delayMs * 2, 5_000);
    }
  };
  void run();
  return () => {
    stopped = true;
    controller?.abort();
  };
}

export const ago = (iso: string | null | undefined, now = Date.now()): string => {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
};

export const shortId = (id: string | null | undefined): string => (id ? id.slice(0, 8) : '—');
