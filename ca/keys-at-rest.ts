import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../lib/fs.js';
import type { Random } from '../lib/random.js';

/**
 * The key-encryption key: from CAIRN_KEK_FILE (32 raw bytes, or 32 bytes in base64/hex text), else
 * generated once into the data dir. Replicas sharing a database must share the KEK file.
 */
export function loadKek(kekFile: string | undefined, dataDir: string, random: Random): { kek: Buffer; source: string; generated: boolean } {
  const path = kekFile ?? join(dataDir, 'kek');
  if (!existsSync(path)) {
    if (kekFile) throw new Error(`CAIRN_KEK_FILE ${kekFile} does not exist`);
    const kek = random.bytes(32);
    writeFileAtomic(path, kek.toString('base64') + '\n', 0o600);
    return { kek, source: path, generated: true };
  }
  return { kek: readKekFile(path), source: path, generated: false };
}

/** A KEK file's key: 32 raw bytes, or 32 bytes in hex or base64 text; refused if others may read it. */
export function readKekFile(path: string): Buffer {
  const problem = kekFileProblem(path);
  if (problem) throw new Error(problem);
  const raw = readFileSync(path);
  if (raw.length === 32) return raw;
  const text = raw.toString('utf8').trim();
  const decoded = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
  if (decoded.length !== 32) throw new Error(`the KEK in ${path} must be 32 bytes (raw, hex or base64)`);
  return decoded;
}

/**
 * With a database dump, the KEK opens every CA key, so its file must be the CA's alone. The rule is
 * PostgreSQL's for its server key: no access for others, ever; the group may read (and only read)
 * when root owns the file, as with a root-managed group (Kubernetes' fsGroup on a Secret volume,
 * a `cairn` group an administrator chose). Anything else is refused. Returns what is wrong, with the
 * chmod to run, or undefined for a file the CA may use.
 */
export function kekFileProblem(path: string): string | undefined {
  const st = statSync(path);
  if (!st.isFile()) return `the KEK file ${path} is not a regular file`;
  const mode = st.mode & 0o777;
  const byOthers = (mode & 0o007) !== 0;
  const byGroup = (mode & 0o070) !== 0 && (st.uid !== 0 || (mode & 0o030) !== 0);
  if (!byOthers && !byGroup) return undefined;
  const who = byOthers ? 'other users' : 'its group';
  return `the KEK file ${path} is accessible to ${who} (mode ${mode.toString(8).padStart(4, '0')}); it must be readable by the CA alone: run chmod 600 ${shellQuote(path)}`;
}

const shellQuote = (s: string): string => (/^[A-Za-z0-9_./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
