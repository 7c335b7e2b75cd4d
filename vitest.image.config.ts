import { defineConfig } from 'vitest/config';

// npm run test:image: the OCI image under podman (test/image). Opt-in: it needs podman and mmdebstrap, and
// builds the image first (about a minute with the root filesystem cached, see docs/deploy.md).
export default defineConfig({
  test: {
    include: ['test/image/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 900_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
