# Cairn image: the CA (`ca start`), the node agent (`agent start`) and the CLI, from this checkout.
#   docker build -t cairn:0.1.0 .
#
# Three stages on one base image, pinned by digest (the multi-platform index of the official
# node:20-bookworm-slim; bump the tag and the digest together, deliberately):
#   build    compilers and every dependency: builds the peer-credential addon and dist/
#   deps     production dependencies only, installed without running any install script
#   runtime  the base image plus the built files: no compiler, no dev dependency, uid 1000
# test/deploy/dockerfile.test.ts checks these rules and assembles the runtime stage's files from the
# same commands to run the CA and the agent from them.

FROM node:20-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0 AS build
# python3, make and g++ build the peer-credential N-API addon. scripts/build-addon.sh points node-gyp
# at the C headers the official image installs with Node (/usr/local/include/node), so nothing is
# downloaded.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/cairn
ENV CAIRN_NODEDIR=/usr/local
# `npm ci` runs the package's install script (scripts/build-addon.sh → node-gyp) and its prepare
# script (the TypeScript build), so it needs the whole source tree; .dockerignore keeps the host's
# node_modules, dist, build and .cairn out of it.
COPY . .
RUN npm ci && npm run build

FROM node:20-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0 AS deps
WORKDIR /opt/cairn
COPY package.json package-lock.json ./
# No install scripts: ours builds the addon (done in `build`) and the runtime dependencies need none.
# Only node_modules leaves this stage, so npm's cache stays behind with it.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0 AS runtime
WORKDIR /opt/cairn
COPY --from=deps /opt/cairn/node_modules ./node_modules
COPY --from=build /opt/cairn/package.json ./package.json
COPY --from=build /opt/cairn/migrations ./migrations
COPY --from=build /opt/cairn/dist ./dist
COPY --from=build /opt/cairn/build/Release/cairn_peercred.node ./build/Release/cairn_peercred.node
COPY --from=build /opt/cairn/build/Release/cairn_ecdsa.node ./build/Release/cairn_ecdsa.node
# the compose services' scripts (bootstrap, first-start secrets)
COPY --from=build /opt/cairn/deploy/compose ./deploy/compose

# The CA's data directory (with DATABASE_URL it only ever holds the bootstrap admin token) and the
# example workload's SVID directory, owned by the unprivileged user the image runs as.
RUN install -d -o 1000 -g 1000 -m 0700 /var/lib/cairn \
 && install -d -o 1000 -g 1000 -m 0755 /var/run/svid

# uid 1000 (`node` in the base image), numeric so Kubernetes' runAsNonRoot can verify it. The node
# agent overrides this with root (compose.yaml, deploy/kubernetes/components/agent/agent.yaml).
USER 1000:1000
EXPOSE 8080 8443
ENTRYPOINT ["node", "/opt/cairn/dist/cli/main.js"]
CMD ["--help"]
