/** Prometheus: the per-route request counter and latency, and the `/metrics` page. */
import type { Handler, MiddlewareHandler } from 'hono';
import type { AppDeps, AppEnv } from '../app-env.ts';

/** Counts each request and observes its latency by route, method (and status); none without metrics. */
export function requestMetrics(deps: AppDeps): MiddlewareHandler<AppEnv> | undefined {
  if (!deps.metrics) return undefined;
  const { requests, latency } = deps.metrics;
  return async (c, next) => {
    const started = performance.now();
    await next();
    const route = c.req.routePath || 'unmatched';
    requests.inc({ route, method: c.req.method, status: String(c.res.status) });
    latency.observe({ route, method: c.req.method }, (performance.now() - started) / 1000);
  };
}

/** `GET /metrics`: the registry's metrics in the text exposition format; none without metrics. */
export function metricsPage(deps: AppDeps): Handler<AppEnv> | undefined {
  if (!deps.metrics) return undefined;
  const { registry } = deps.metrics;
  return async (c) => c.text(await registry.metrics(), 200, { 'Content-Type': registry.contentType });
}
