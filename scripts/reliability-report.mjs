// Turns the reliability run's outputs (scripts/reliability.sh) into RELIABILITY.md on stdout.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
const json = (name) => (existsSync(join(dir, name)) ? JSON.parse(readFileSync(join(dir, name), 'utf8')) : undefined);
const stores = ['embedded', 'postgres'];

const corpus = stores.map((s) => ({ store: s, ...(json(`http-corpus-${s}.json`) ?? { inputs: 0, fiveXX: 0, uncatalogued: 0 }) }));
const fuzz = json('fuzz.json') ?? { properties: 0, inputs: 0 };
const workload = json('workload-corpus.json') ?? { inputs: 0, unexpected: 0 };
const outage = json('pg-outage.json');
const runs = stores.map((s) => ({ store: s, report: json(`vitest-${s}.json`) }));

const FAULTS = [
  ['one of two CA replicas on one PostgreSQL killed (SIGKILL) during a burst of raced token redemptions and signings: no token redeemed twice, every SVID handed out has its inventory row', /redeems each token at most once and records every SVID/],
  ['CA killed with SIGKILL under a streaming agent: stream and SVID kept; restart on the same data (crash recovery), changes flow into the same stream', /the workload keeps its stream and SVID; after a restart/],
  ['CA stopped while the agent serves; CA restarted on the same data', /with the CA stopped the agent keeps serving/],
  ['CA away past SVID expiry: served until expiry, then PermissionDenied (never an expired SVID)', /serves its SVIDs until they expire/],
  ['agent shutdown: streams end with Unavailable, socket removed', /on shutdown, open streams end with Unavailable/],
  ['agent restarted without its token: persisted SVID reused, workloads served again', /after the file is deleted a restart reuses its SVID/],
  ['entry changed under open streams: re-issued without ending them', /an updated entry reaches open streams/],
  ['CA killed (SIGKILL) at an exact point inside one issuance (a table lock holds its transaction before the token update, the inventory row, the node record; after its commit with the answer lost; inside a renewal): never half-recorded, the retry completes, a lost answer is delivered again', /is never half-recorded/],
  ['CA killed (SIGKILL) during a burst of 40 first attestations, wherever each one was, then restarted on the same data (PGlite crash recovery on embedded): every retry with its key succeeds with exactly one recorded SVID; answers already given are given again, not replaced', /every attestation is complete or absent/],
  ['PostgreSQL crashed and kept down for 60 s under load (admin writes and reads, signing, token minting, JWKS; a streaming workload): 503 with a code at once, agents keep serving, recovery without restarts', /the CA answers 503 store_unavailable at once/],
  ['PostgreSQL frozen (every server process SIGSTOPped) while requests wait on it: each answers 503 within the CA\'s own timeouts (connect 5 s, query 16 s) instead of hanging, and the CA recovers when it resumes', /answers 503 store_unavailable within its own timeouts/],
  ['a database connection terminated mid-transaction and under the NOTIFY listener: typed 503, no crash, the listener comes back', /connections lost mid-use|a transaction whose connection is terminated|the NOTIFY listener reconnects/],
  ['CA away at an agent\'s first attestation: the agent retries with the same key and attests when the CA returns', /retries its attestation with the same key/],
  ['failed evidence-based attestations (PSAT, x509pop) from one source limited to 60 a minute (429 with the wait), other sources unaffected', /limits failed PSAT and x509pop attempts per source/],
  ['agent killed after the CA committed its first attestation (the answer never saved): restarted with the same token, it presents its pending key and gets the same SVID', /died after the CA committed its redemption/],
  ['agent data dir unwritable at start (ENOSPC, EROFS, EACCES as non-root): clear error before the join token is spent', /an unwritable data dir at start: the agent exits non-zero/],
  ['agent data dir full (ENOSPC) or read-only (EROFS) while running: clear error, state file intact, workloads served, recovery when space returns', /own SVID renewal: clear error|restarted on the same data dir \(B read-only again\)|the disk fills between the probe|nearly expires: the agent switches|writeFileAtomic on a real full or read-only tmpfs/],
];
const tests = runs.flatMap(({ store, report }) => (report?.testResults ?? []).flatMap((f) => f.assertionResults.map((a) => ({ store, name: a.fullName ?? a.title, status: a.status }))));
const crashes = runs.reduce((n, { report }) => n + (report?.testResults ?? []).filter((f) => f.status === 'failed' && f.assertionResults.length === 0).length, 0);
const failed = tests.filter((t) => t.status === 'failed');

const rows = FAULTS.map(([what, re]) => {
  const hits = tests.filter((t) => re.test(t.name));
  const per = stores.map((s) => {
    const h = hits.filter((t) => t.store === s && t.status !== 'skipped' && t.status !== 'pending');
    if (h.length === 0) return hits.some((t) => t.store === s) ? 'n/a (runs on the other store)' : 'not run';
    return h.every((t) => t.status === 'passed') ? 'survived' : 'FAILED';
  });
  return `| ${what} | ${per.join(' | ')} |`;
});

const total = corpus.reduce((n, c) => n + c.inputs, 0) + fuzz.inputs + workload.inputs;
process.stdout.write(`# Reliability

Regenerate with \`bash scripts/reliability.sh\` (it runs the suites below on the embedded store and on a
private PostgreSQL). Generated ${new Date().toISOString().slice(0, 10)}.

## Hostile input

| | embedded | PostgreSQL |
|---|---:|---:|
| hostile HTTP inputs (admin, public, token redemption, node attestation), each with its exact status and code | ${corpus[0].inputs} | ${corpus[1].inputs} |
| responses with status 5xx | **${corpus[0].fiveXX}** | **${corpus[1].fiveXX}** |
| error responses whose code is not in the catalogue | ${corpus[0].uncatalogued} | ${corpus[1].uncatalogued} |

Workload API (real server on a Unix socket): **${workload.inputs}** hostile calls — forged JWT-SVIDs at ValidateJWTSVID
(\`alg: none\`, HS256 keyed with the public key, missing/unknown/mismatched \`kid\`, wrong \`typ\`, \`crit\`, embedded
\`jwk\`/\`jku\`, no or wrong \`aud\`, expired, not yet valid, tampered header/payload/signature, malformed encodings)
and a flood of 2,000 calls without the security header over 200 connections — with **${workload.unexpected}**
answers other than InvalidArgument, and the server still serving a proper caller afterwards.

Property-based fuzzing (fast-check, fixed seed, time-bounded): ${fuzz.properties} properties over the SPIFFE ID
parser, CSR parsing and proof of possession, the JWT-SVID validator and the bundle codec, **${fuzz.inputs} inputs**;
the property everywhere is "a typed refusal or a correct answer, never another exception".

Inputs tried in total: **${total}**. Test failures in these suites: **${failed.length}**; test files that crashed
without reporting: **${crashes}**.

## Faults (real processes, real sockets, real PostgreSQL and file systems)

| fault | embedded | PostgreSQL |
|---|---|---|
${rows.join('\n')}

${outage ? `PostgreSQL outage figures (last run): ${outage.outageSeconds} s down; **${outage.requestsDuringOutage}** requests during the outage,
**${outage.answered503}** answered 503 \`store_unavailable\` with Retry-After (the slowest in ${outage.slowestMs} ms), ${outage.servedFromCache} served
from cache, 0 other answers; **${outage.workloadCallsDuringOutage}** workload calls to the agent meanwhile with **${outage.workloadFailures}** failures;
the first admin write succeeded ${outage.recoveredMs} ms after PostgreSQL was back, and a change reached an open workload stream
through the re-established NOTIFY listener in ${outage.notifyMs} ms.

` : ''}Data lost in these scenarios: **0** is what the assertions above require (a workload holding a valid SVID
keeps it; no entry change is lost across the CA restart; an issuance is recorded completely or not at all).

Every test file of the suite ends with a scan of the logs, the CLI's stderr and the CA and agent processes'
output it produced for secrets (admin tokens, one-time tokens, private keys); none has been found.

## Limits

- The exact-point kills need PostgreSQL's locks to hold the CA's transaction still, so they run on the
  PostgreSQL store. On the embedded store (the same transaction code on PGlite) the burst kill lands at
  random points inside issuances instead.
- The 60 s outage runs on its own PostgreSQL cluster (the suite's shared server stays up) and only on the
  PostgreSQL store: the embedded database lives inside the CA process and cannot go away alone.
`);
