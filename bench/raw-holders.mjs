// Raw baselines for the footprint benchmark, each run as its own idle process like the thing it is
// compared with; each prints "ready" on stdout once it holds what it holds.
//   node raw-holders.mjs keys N         a bare node process holding N P-256 private keys (KeyObjects)
//                                       and an 800-byte certificate chain for each: the agent's data
//   node raw-holders.mjs pglite DIR     a bare node process with PGlite (its defaults) open on DIR,
//                                       after one query: the embedded store alone
//   node raw-holders.mjs embedded DIR   the same, opened as Cairn opens it (ca/db/embedded.ts, its settings)
import { generateKeyPairSync, randomBytes } from 'node:crypto';

const [kind, arg] = process.argv.slice(2);
const held = [];
if (kind === 'keys') {
  for (let i = 0; i < Number(arg); i++) held.push({ key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, chain: randomBytes(800) });
} else if (kind === 'pglite') {
  const { PGlite } = await import('@electric-sql/pglite');
  const db = await PGlite.create(arg);
  await db.query('SELECT count(*) FROM pg_class');
  held.push(db);
} else if (kind === 'embedded') {
  const { openEmbedded } = await import('../dist/ca/db/embedded.js');
  const db = await openEmbedded(arg);
  await db.query('SELECT count(*) FROM pg_class');
  held.push(db);
} else {
  throw new Error(`unknown baseline ${kind}`);
}
process.stdout.write('ready\n');
setInterval(() => held.length, 1 << 30);
