import { type GlobalArgs, resolveTarget } from './connection.ts';
import { RegistryHttp } from './http.ts';
import { createOutput, type Output } from './output.ts';

/** What a command handler gets: where to write, and (lazily) the registry client. */
export interface Context {
  out: Output;
  /** The registry client; building it validates the connection flags. */
  registry(): RegistryHttp;
}

/**
 * Wraps a command handler: builds its context and closes the HTTP client
 * afterwards. Errors propagate to `main`, which prints them and picks the exit code.
 */
export function run<A extends GlobalArgs>(
  handler: (args: A, ctx: Context) => Promise<void>,
): (args: A) => Promise<void> {
  return async (args) => {
    let http: RegistryHttp | undefined;
    const ctx: Context = {
      out: createOutput(Boolean(args.json)),
      registry: () => {
        http ??= new RegistryHttp(resolveTarget(args));
        return http;
      },
    };
    try {
      await handler(args, ctx);
    } finally {
      ctx.out.endProgress();
      await http?.close();
    }
  };
}
