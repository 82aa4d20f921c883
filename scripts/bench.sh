#!/usr/bin/env bash
# Benchmarks: build, start a private PostgreSQL (as the tests do), run bench/, rewrite BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
source scripts/postgres.sh
start_private_postgres
trap stop_private_postgres EXIT
DATABASE_URL="$CAIRN_TEST_DATABASE_URL" node --import tsx bench/run.ts "$@"
