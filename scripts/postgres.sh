#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/bench.sh: a throwaway PostgreSQL cluster for tests.
# Installs Debian's postgresql package if no server binaries are found (needs root or sudo),
# runs initdb/pg_ctl as an unprivileged user (PostgreSQL refuses to run as root), listens on
# 127.0.0.1 at a free port with its socket in a private directory, trust auth for that user only.

find_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

install_postgres() {
  echo "== installing PostgreSQL from Debian's packages"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

start_private_postgres() {
  local bin
  bin=$(find_pg_bin) || { install_postgres; bin=$(find_pg_bin); }
  PG_BIN="$bin"
  PG_VERSION_STRING=$("$PG_BIN/postgres" --version)
  PG_DIR=$(mktemp -d /tmp/cairn-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  PG_PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  PG_RUN=()
  PG_USER=$(id -un)
  if [ "$(id -u)" -eq 0 ]; then
    PG_USER=postgres
    id -u postgres >/dev/null 2>&1 || useradd --system --home-dir "$PG_DIR" --shell /usr/sbin/nologin postgres
    chown postgres "$PG_DIR"
    PG_RUN=(setpriv --reuid=postgres --regid="$(id -g postgres)" --init-groups --)
  fi
  "${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U cairn --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null 2>&1 \
    || "${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U cairn --auth=trust -E UTF8 --no-locale >/dev/null
  "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 start \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c shared_buffers=128MB" >/dev/null
  CAIRN_TEST_DATABASE_URL="postgres://cairn@127.0.0.1:$PG_PORT/postgres"
  export PG_BIN PG_DIR PG_PORT PG_VERSION_STRING CAIRN_TEST_DATABASE_URL
  echo "== PostgreSQL running on 127.0.0.1:$PG_PORT ($PG_DIR, as $PG_USER)"
}

stop_private_postgres() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
