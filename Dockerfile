# Cairn image: the CA (`ca start`), the node agent (`agent start`) and the CLI, from this checkout.
#   docker build -t cairn:0.1.0 .
FROM node:20-bookworm-slim

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
# Dev dependencies stay installed: pruning saves little and this image is also the admin CLI.

# The CA's data directory (with DATABASE_URL it only ever holds the bootstrap admin token) and the
# example workload's SVID directory, owned by the unprivileged user the image runs as.
RUN install -d -o 1000 -g 1000 -m 0700 /var/lib/cairn \
 && install -d -o 1000 -g 1000 -m 0755 /var/run/svid

# uid 1000 (`node` in the base image), numeric so Kubernetes' runAsNonRoot can verify it. The node
# agent overrides this with root (compose.yaml, deploy/kubernetes/20-agent.yaml).
USER 1000:1000
EXPOSE 8080 8443
ENTRYPOINT ["node", "/opt/cairn/dist/cli/main.js"]
CMD ["--help"]
