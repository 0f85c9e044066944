import { defineConfig } from 'vitest/config';
import { SummaryLineReporter } from './test/support/summary-line-reporter.ts';

// Projects: `unit` needs nothing; `integration` gets one PostgreSQL
// server for the whole run (global setup) and a fresh database per test file;
// the `alone-N` projects run last, one file each, one after the other, each
// on a server of its own: the floods (they load the machine for up to a
// minute, and print figures that mean something only without another file's
// load beside them).
const alone = ['test/security/hostile-beside-normal.test.ts', 'test/chaos/overload.test.ts'];
const integration = {
  globalSetup: ['packages/testkit/src/global-setup.ts'],
  setupFiles: ['packages/testkit/src/vitest-setup.ts'],
  testTimeout: 60_000,
  hookTimeout: 120_000,
};
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
          exclude: ['**/*.unit.test.ts', '**/node_modules/**', ...alone],
          ...integration,
          // Two cores: files spawn processes of their own; keep parallelism modest.
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
      // One after the other, in this order (the overload flood leaves
      // PostgreSQL busy with its writes for a while after it ends).
      ...alone.map((file, i) => ({
        test: {
          name: `alone-${i + 1}`,
          include: [file],
          ...integration,
          maxWorkers: 1,
          sequence: { groupOrder: 2 + i },
        },
      })),
    ],
  },
});
