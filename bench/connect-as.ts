import { connect as netConnect, type Socket } from 'node:net';

/**
 * A Unix-socket connection made as `uid` (this process must be root): the effective uid and gid are
 * switched only around connect(2), which the kernel reads SO_PEERCRED from, so one benchmark process
 * can be a thousand distinct callers.
 */
export function connectAs(socket: string, uid: number): Promise<Socket> {
  process.setegid!(uid);
  process.seteuid!(uid);
  let s: Socket;
  try {
    // net.connect on a path calls connect(2) synchronously: the kernel records the credentials now
    s = netConnect(socket);
  } finally {
    process.seteuid!(0);
    process.setegid!(0);
  }
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}
