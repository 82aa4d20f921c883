#!/usr/bin/env bash
# Benchmarks: build, start a private PostgreSQL (as the tests do), run bench/, rewrite BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
# The fleet benchmark holds thousands of connections per process. Node raises its own soft descriptor limit to
# the hard one (`ulimit -Hn` is the ceiling that counts); lift it here for everything else the benchmarks start.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
source scripts/postgres.sh
start_private_postgres
trap stop_private_postgres EXIT
DATABASE_URL="$CAIRN_TEST_DATABASE_URL" node --import tsx bench/run.ts "$@"
