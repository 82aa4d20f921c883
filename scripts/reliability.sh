#!/usr/bin/env bash
# Regenerates RELIABILITY.md: runs the hostile-input corpus, the fuzzers and the fault scenarios on
# both stores (a private PostgreSQL, as the tests use) and writes their figures.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
source scripts/postgres.sh
start_private_postgres
OUT=$(mktemp -d /tmp/cairn-reliability.XXXXXX)
trap 'stop_private_postgres; rm -rf "$OUT"' EXIT
SUITES=(test/hostile test/unit/fuzz test/faults test/integration/pg-connection-loss.test.ts test/integration/node-attestation.test.ts test/integration/node-agent/workloads.test.ts test/e2e/systemd.test.ts
  # the security review's findings (issue 11)
  test/integration/node-agent/caller-attacks.test.ts test/integration/node-agent/caller-limits.test.ts test/integration/selectors.test.ts
  test/unit/node-agent/systemd-cgroup.test.ts test/integration/attestor-credentials.test.ts test/e2e/admin-tls.test.ts test/integration/node-bans.test.ts
  test/integration/x509pop-flood.test.ts test/integration/anonymous-limits.test.ts test/unit/issuance/csr-key-policy.test.ts
  test/integration/listener-limits.test.ts test/e2e/ca-start-config.test.ts test/integration/ca-constraints.test.ts test/deploy)
status=0
CAIRN_RELIABILITY_DIR="$OUT" CAIRN_TEST_STORE=embedded npx vitest run --reporter=default --reporter=json --outputFile.json="$OUT/vitest-embedded.json" "${SUITES[@]}" || status=1
CAIRN_RELIABILITY_DIR="$OUT" CAIRN_TEST_STORE=postgres DATABASE_URL="$CAIRN_TEST_DATABASE_URL" \
  npx vitest run --reporter=default --reporter=json --outputFile.json="$OUT/vitest-postgres.json" "${SUITES[@]}" || status=1
node scripts/reliability-report.mjs "$OUT" > RELIABILITY.md
echo "wrote RELIABILITY.md"
exit $status
