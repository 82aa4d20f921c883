#!/usr/bin/env bash
# One-shot bootstrap for compose.yaml (the `bootstrap` service), safe to run again:
#   1. waits until the CA answers /readyz,
#   2. creates the trust domain unless it exists,
#   3. writes a fresh join token for the agent to $JOIN_TOKEN_FILE,
#   4. registers the example workload (its uid) under the agent unless that entry exists.
# A fresh token on every run is deliberate: tokens are single-use and expire (10 min), and the agent
# reads the file only while it has no valid SVID of its own, so an unused token is harmless and a
# re-run after the agent's state volume was reset gets it going again.
#
# The admin token never crosses a network in cleartext: compose.yaml runs this service in ca1's network
# namespace (network_mode: service:ca1), so it reaches ca1's plain listener on 127.0.0.1, which serves
# admin routes to loopback callers only (the CLI itself refuses plain HTTP to any other address).
set -euo pipefail

read -r -a cairn <<<"${CAIRN_CLI:-node /opt/cairn/dist/cli/main.js}"
export CAIRN_SERVER="${CAIRN_SERVER:-http://127.0.0.1:8080}"
if [ -z "${CAIRN_ADMIN_TOKEN:-}" ] && [ -z "${CAIRN_ADMIN_TOKEN_FILE:-}" ]; then
  echo "bootstrap: set CAIRN_ADMIN_TOKEN_FILE (or CAIRN_ADMIN_TOKEN): the admin token of the CA replicas" >&2
  exit 1
fi
trust_domain="${TRUST_DOMAIN:-example.org}"
agent_id="${AGENT_ID:-spiffe://$trust_domain/agent/compose}"
workload_id="${WORKLOAD_ID:-spiffe://$trust_domain/workload/example}"
workload_uid="${WORKLOAD_UID:-1000}"
token_file="${JOIN_TOKEN_FILE:-/bootstrap/join-token}"
wait_seconds="${WAIT_SECONDS:-120}"

log() { echo "bootstrap: $*" >&2; }

ready() {
  node -e 'fetch(process.argv[1] + "/readyz").then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$CAIRN_SERVER"
}

deadline=$((SECONDS + wait_seconds))
until ready; do
  if ((SECONDS >= deadline)); then
    log "the CA at $CAIRN_SERVER is not ready after ${wait_seconds}s"
    exit 1
  fi
  sleep 2
done
log "the CA at $CAIRN_SERVER is ready"

if "${cairn[@]}" trust-domain show "$trust_domain" >/dev/null 2>&1; then
  log "trust domain $trust_domain exists"
else
  "${cairn[@]}" trust-domain create "$trust_domain" >/dev/null
  log "created trust domain $trust_domain"
fi

umask 077
mkdir -p "$(dirname "$token_file")"
"${cairn[@]}" token create --trust-domain "$trust_domain" --agent-id "$agent_id" --ttl 10m >"$token_file.tmp"
mv -f "$token_file.tmp" "$token_file"
log "wrote a join token for $agent_id to $token_file (single use, 10 min)"

existing=$("${cairn[@]}" entry list --spiffe-id "$workload_id" --parent-id "$agent_id" --json)
if grep -qF "\"unix:uid:$workload_uid\"" <<<"$existing"; then
  log "entry $workload_id (unix:uid:$workload_uid) exists"
else
  "${cairn[@]}" entry create --spiffe-id "$workload_id" --parent-id "$agent_id" --selector "unix:uid:$workload_uid" >/dev/null
  log "registered $workload_id for unix:uid:$workload_uid under $agent_id"
fi
