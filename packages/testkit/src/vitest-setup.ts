import { afterAll } from 'vitest';
import { stopAllRegistries } from './registry-process.ts';

// Every registry process a test file started is stopped when the file ends,
// whether its tests passed or failed.
afterAll(stopAllRegistries, 30_000);
