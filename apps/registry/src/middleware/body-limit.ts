/**
 * The request body cap (`maxBodyBytes`, 1 MiB by default): 413 for a larger
 * body, declared or chunked, after reading and dropping what the client still
 * sends so that it reads the answer.
 */
import type { Duplex } from 'node:stream';
import type { MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { AppDeps, AppEnv } from '../app-env.ts';
import { drainThenClose } from '../client-error.ts';
import { ApiError } from '../errors.ts';

/**
 * Reads and drops a refused body (up to `budget` bytes, while it keeps
 * coming: client-error.ts `drainThenClose`) before the 413 goes out. Answering and closing while the client is still
 * sending makes the kernel reset the connection, and the client never reads
 * the answer (a 4 MB body saw ECONNRESET, not 413: found by issue 16's fuzzer).
 */
async function discardBody(env: unknown, declared: number, budget: number): Promise<void> {
  const incoming = (env as { incoming?: NodeJS.ReadableStream & { complete?: boolean } } | undefined)
    ?.incoming;
  if (!incoming || incoming.complete || declared > budget) return;
  const socket = (incoming as { socket?: Duplex }).socket;
  if (!socket) return;
  await new Promise<void>((done) => drainThenClose(incoming, socket, done));
}

/**
 * Body size cap. A declared Content-Length is checked without touching the
 * body, which keeps @hono/node-server's fast body read (hono's bodyLimit would
 * build a web stream for every request); chunked bodies go through bodyLimit.
 */
export function requestBodyLimit(deps: AppDeps): MiddlewareHandler<AppEnv> {
  const maxBodyBytes = deps.maxBodyBytes ?? 1024 * 1024;
  const tooLarge = () => {
    throw new ApiError('payload_too_large', `request body exceeds ${maxBodyBytes} bytes`);
  };
  const chunkedLimit = bodyLimit({ maxSize: maxBodyBytes, onError: tooLarge });
  return async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    const declared = c.req.header('content-length');
    if (declared !== undefined && !c.req.header('transfer-encoding')) {
      if (Number(declared) > maxBodyBytes) {
        await discardBody(c.env, Number(declared), maxBodyBytes * 4);
        tooLarge();
      }
      return next();
    }
    return chunkedLimit(c, next);
  };
}
