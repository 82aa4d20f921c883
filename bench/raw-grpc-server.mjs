// The raw baseline for the Workload API benchmarks: a bare node:http2 server on a Unix socket that
// answers with pre-recorded gRPC frames — no attestation, no protobuf, no routing, no RPC library.
// Run as its own process, like the agent, so both sides of each ratio share the machine alike.
//   node raw-grpc-server.mjs SOCKET X509_FRAME_FILE JWT_FRAME_FILE
// POST /push writes the X.509 frame once more to every open stream (the rotation baseline).
import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http2';

const [socket, x509File, jwtFile] = process.argv.slice(2);
const x509 = readFileSync(x509File);
const jwt = readFileSync(jwtFile);
const open = new Set();

const server = createServer();
server.on('stream', (stream, headers) => {
  const path = headers[':path'];
  stream.on('error', () => open.delete(stream));
  if (path === '/push') {
    for (const s of open) s.write(x509);
    stream.respond({ ':status': 200 });
    stream.end();
    return;
  }
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  if (path === '/SpiffeWorkloadAPI/FetchJWTSVID') {
    stream.end(jwt);
    return;
  }
  open.add(stream);
  stream.on('close', () => open.delete(stream));
  stream.write(x509);
});
rmSync(socket, { force: true });
server.listen({ path: socket, backlog: 4096 }, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
