#!/usr/bin/env bash
# The whole test suite: typecheck, build, then every test against BOTH stores: the embedded
# PostgreSQL (PGlite) and a real PostgreSQL server, which this script installs from Debian's
# packages when missing, starts as a non-root user on a private port and socket, and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== typecheck and build"
npx tsc -p tsconfig.json --noEmit
npm run --silent build

# The systemd unit tests check deploy/systemd with systemd-analyze (Debian's systemd package).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "== installing systemd-analyze from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

# The CA-certificate tests read extensions with Debian's python3-cryptography (an independent parser).
if ! /usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1; then
  echo "== installing python3-cryptography from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-cryptography >/dev/null
fi

# The upstream authority test reads the Workload API with Debian's python3-grpcio (an independent client).
if ! /usr/bin/python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "== installing python3-grpcio from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-grpcio >/dev/null
fi

# The completion tests source `cairn completion zsh` in a real zsh (Debian's zsh package).
if ! command -v zsh >/dev/null 2>&1; then
  echo "== installing zsh from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends zsh >/dev/null
fi

# The revocation test runs nginx with ssl_crl as an independent verifier (Debian's nginx-light).
if ! [ -x /usr/sbin/nginx ]; then
  echo "== installing nginx from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi

# The Kubernetes package tests render deploy/kubernetes with `kubectl kustomize` (Kustomize v5: kubectl
# 1.27 or later), from apt's kubectl package.
if ! kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v[5-9]'; then
  echo "== installing kubectl from apt"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubectl >/dev/null
fi

source scripts/postgres.sh
start_private_postgres
REPORTS=$(mktemp -d /tmp/cairn-reports.XXXXXX)
trap 'stop_private_postgres; rm -rf "$REPORTS"' EXIT

status=0
echo "== suite on the embedded store (PGlite)"
CAIRN_TEST_STORE=embedded npx vitest run --reporter=default --reporter=json --outputFile.json="$REPORTS/embedded.json" "$@" || status=1

echo "== suite on PostgreSQL ($PG_VERSION_STRING)"
CAIRN_TEST_STORE=postgres DATABASE_URL="$CAIRN_TEST_DATABASE_URL" \
  npx vitest run --reporter=default --reporter=json --outputFile.json="$REPORTS/postgres.json" "$@" || status=1

# With CAIRN_RELIABILITY_DIR set (the hostile corpus writes its figures there too), the reports are kept
# for scripts/reliability-report.mjs: RELIABILITY.md from a full run instead of a second one.
if [ -n "${CAIRN_RELIABILITY_DIR:-}" ]; then
  for s in embedded postgres; do if [ -f "$REPORTS/$s.json" ]; then cp "$REPORTS/$s.json" "$CAIRN_RELIABILITY_DIR/vitest-$s.json"; fi; done
fi
node scripts/summarize-tests.mjs "$REPORTS"/*.json
exit $status
