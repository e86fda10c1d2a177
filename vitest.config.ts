import { defineConfig } from 'vitest/config';

// Three projects, one per kind of test: unit tests touch only memory and temp files,
// integration tests start real peers (s3rver, QEMU tools), e2e tests drive the built CLI.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { test: { name: 'integration', include: ['test/integration/**/*.test.ts'], testTimeout: 120_000, hookTimeout: 60_000 } },
      { test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], testTimeout: 300_000, hookTimeout: 120_000 } },
    ],
  },
});
