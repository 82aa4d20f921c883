import { existsSync, readFileSync } from 'node:fs';
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
  const raw = readFileSync(path);
  if (raw.length === 32) return { kek: raw, source: path, generated: false };
  const text = raw.toString('utf8').trim();
  const decoded = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
  if (decoded.length !== 32) throw new Error(`the KEK in ${path} must be 32 bytes (raw, hex or base64)`);
  return { kek: decoded, source: path, generated: false };
}
