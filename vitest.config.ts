import { defineConfig } from 'vitest/config';
import { SummaryLineReporter } from './test/support/summary-line-reporter.ts';

// Two projects: `unit` needs nothing; `integration` gets one PostgreSQL server
// for the whole run (global setup) and a fresh database per test file.
export default defineConfig({
  test: {
    reporters: ['default', new SummaryLineReporter()],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['{apps,packages}/*/src/**/*.unit.test.ts'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['{apps,packages}/*/src/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: ['**/*.unit.test.ts', '**/node_modules/**'],
          globalSetup: ['packages/testkit/src/global-setup.ts'],
          setupFiles: ['packages/testkit/src/vitest-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // Two cores: files spawn processes of their own; keep parallelism modest.
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
