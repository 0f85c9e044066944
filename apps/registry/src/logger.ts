import pino from 'pino';
import type { RegistryConfig } from './registry-config.ts';

export type Logger = pino.Logger;

/** JSON lines on stdout; `pretty` adds nothing but a readable time. */
export function createLogger(config: Pick<RegistryConfig, 'logLevel' | 'logFormat' | 'replicaId'>): Logger {
  return pino({
    level: config.logLevel,
    base: { replica_id: config.replicaId },
    timestamp:
      config.logFormat === 'pretty' ? pino.stdTimeFunctions.isoTime : pino.stdTimeFunctions.epochTime,
  });
}
