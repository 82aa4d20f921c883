#!/usr/bin/env bash
# Builds the peer-credential N-API addon (run by `npm install` / `npm ci`). node-gyp downloads Node's
# headers unless told where they are; our machines have no internet, so point it at the headers
# installed with Node itself (Debian's nodejs puts them in /usr/include/node; a tarball install in
# <prefix>/include/node). Override with CAIRN_NODEDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
nodedir="${CAIRN_NODEDIR:-${npm_config_nodedir:-}}"
if [ -z "$nodedir" ]; then
  prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  for d in "$prefix" /usr /usr/local; do
    if [ -f "$d/include/node/node_api.h" ]; then nodedir="$d"; break; fi
  done
fi
if [ -z "$nodedir" ] || [ ! -f "$nodedir/include/node/node_api.h" ]; then
  echo "cannot find Node's C headers (node_api.h); install them (Debian: nodejs ships them) or set CAIRN_NODEDIR" >&2
  exit 1
fi
gyp=$(command -v node-gyp || true)
if [ -z "$gyp" ]; then
  npm_root=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  gyp="node $npm_root/node_modules/node-gyp/bin/node-gyp.js"
fi
$gyp rebuild --nodedir="$nodedir" --loglevel=warn
