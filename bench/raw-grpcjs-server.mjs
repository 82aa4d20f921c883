// The second raw baseline for the Workload API benchmark: a bare @grpc/grpc-js server on a Unix
// socket, answering FetchX509SVID and FetchJWTSVID with the agent's recorded messages (no
// attestation, no protobuf: the bytes pass through as they are). What a gRPC library costs per
// call on its own, to hold the agent's per-stream cost against.
//   node raw-grpcjs-server.mjs SOCKET X509_FRAME_FILE JWT_FRAME_FILE   (frames: length prefix included)
import { readFileSync, rmSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

const [socket, x509File, jwtFile] = process.argv.slice(2);
const x509 = readFileSync(x509File).subarray(5);
const jwt = readFileSync(jwtFile).subarray(5);
const bytes = { requestSerialize: (b) => b, requestDeserialize: (b) => b, responseSerialize: (b) => b, responseDeserialize: (b) => b };
const server = new grpc.Server();
server.addService(
  {
    FetchX509SVID: { path: '/SpiffeWorkloadAPI/FetchX509SVID', requestStream: false, responseStream: true, ...bytes },
    FetchJWTSVID: { path: '/SpiffeWorkloadAPI/FetchJWTSVID', requestStream: false, responseStream: false, ...bytes },
  },
  {
    FetchX509SVID: (call) => call.write(x509),
    FetchJWTSVID: (_call, callback) => callback(null, jwt),
  },
);
rmSync(socket, { force: true });
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => server.forceShutdown());
