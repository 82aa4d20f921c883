#!/usr/bin/env bash
# First start of compose.yaml (the `secrets` service), safe to run on every start: creates what the CA
# replicas must share, unless it exists, in the ca-secrets volume:
#   kek          the key-encryption key (32 random bytes, base64) that seals every CA key in PostgreSQL
#   admin-token  the admin token (cairn-admin.<43 random letters and digits>)
# each 0600 and owned by the CAs' uid. Nothing is ever overwritten: a new KEK would make every key
# already in the database unreadable. Nothing secret is printed or committed to the repository.
# To use your own values, write them into the volume before the first start (or replace them and
# restart every replica; a new KEK needs an empty database).
set -euo pipefail

dir="${SECRETS_DIR:-/run/cairn-secrets}"
owner="${SECRETS_OWNER:-1000:1000}"

log() { echo "init-secrets: $*" >&2; }

random_kek() {
  node -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("base64") + "\n")'
}

random_admin_token() {
  node -e '
    const { randomInt } = require("node:crypto");
    const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let t = "cairn-admin.";
    for (let i = 0; i < 43; i++) t += abc[randomInt(abc.length)];
    process.stdout.write(t + "\n");'
}

# create NAME GENERATOR: write the file atomically (temp file, 0600, owner, rename) unless it exists.
create() {
  local name=$1 generate=$2 file="$dir/$1" tmp
  if [ -s "$file" ]; then
    log "$name exists; kept"
    return
  fi
  tmp=$(mktemp "$dir/.$name.XXXXXX")
  "$generate" >"$tmp"
  chmod 0600 "$tmp"
  chown "$owner" "$tmp"
  mv -f "$tmp" "$file"
  log "generated $name"
}

umask 077
mkdir -p "$dir"
create kek random_kek
create admin-token random_admin_token
# The bootstrap service writes the agent's join token there as the same unprivileged uid.
if [ -n "${BOOTSTRAP_DIR:-}" ]; then
  mkdir -p "$BOOTSTRAP_DIR"
  chown "$owner" "$BOOTSTRAP_DIR"
  chmod 0700 "$BOOTSTRAP_DIR"
fi
