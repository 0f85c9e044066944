/**
 * The SDK's HTTP client: node:http(s) over kept-alive connections.
 *
 * Why not `fetch`: against a registry on the same machine, Node's fetch
 * costs about 0.6–1.2 ms more per request when idle and about 3× the client
 * CPU of node:http in a busy loop (docs/benchmarks.md, "The SDK's HTTP
 * client"); an agent pays it on every claim, completion and heartbeat, and a
 * job's pickup pays it twice (the submission, then the claim's answer).
 */
import http from 'node:http';
import https from 'node:https';

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
}

/**
 * An idle kept-alive connection is closed after this long, before a server's
 * usual keep-alive timeout (Node's 5 s) closes it under a request being sent.
 */
const idleSocketMs = 4_000;
const agents = {
  'http:': new http.Agent({ keepAlive: true, timeout: idleSocketMs }),
  'https:': new https.Agent({ keepAlive: true, timeout: idleSocketMs }),
};

/**
 * Sends one request and reads the whole answer as text. Rejects with the
 * signal's reason when it aborts (a `TimeoutError` for `AbortSignal.timeout`),
 * with Node's network error otherwise (`code`: `ECONNREFUSED`, …).
 */
export function httpRequest(
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; signal: AbortSignal },
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const { signal } = init;
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const target = new URL(url);
    const lib = target.protocol === 'https:' ? https : http;
    const agent = target.protocol === 'https:' ? agents['https:'] : agents['http:'];
    const headers = { ...init.headers };
    if (init.body !== undefined) headers['content-length'] = String(Buffer.byteLength(init.body));
    const req = lib.request(target, { method: init.method, headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => {
        signal.removeEventListener('abort', onAbort);
        const answerHeaders = new Headers();
        const raw = res.rawHeaders;
        for (let i = 0; i + 1 < raw.length; i += 2)
          answerHeaders.append(raw[i] as string, raw[i + 1] as string);
        resolve({ status: res.statusCode ?? 0, headers: answerHeaders, text });
      });
      res.on('error', fail);
    });
    function fail(err: Error): void {
      signal.removeEventListener('abort', onAbort);
      // A reset on a reused connection is not retried as "not sent": it may
      // come after the request was read (a lost answer); undici's fetch, used
      // before, did not retry it either.
      reject(signal.aborted ? signal.reason : err);
    }
    function onAbort(): void {
      req.destroy(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    }
    signal.addEventListener('abort', onAbort, { once: true });
    req.on('error', fail);
    req.end(init.body);
  });
}
