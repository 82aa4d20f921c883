import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readKekFile } from '../../ca/keys-at-rest.js';
import { kekId } from '../../ca/authority/sealing.js';
import { stagedKekFile } from '../../ca/kek/service.js';
import type { KekRotationView, KekStatusView } from '../../contract/kek-api.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { ConfigError, type Parsed } from '../flags.js';
import { adminClientFor, CliError, dataDirOf } from '../client.js';
import { printResult, say, table } from '../output.js';
import type { KEK_ROTATE_FLAGS, KEK_STATUS_FLAGS } from '../specs/kek.js';

function keyOf(path: string, setting: string): Buffer {
  try {
    return readKekFile(path);
  } catch (err) {
    throw new ConfigError(`${setting}: ${(err as Error).message}`);
  }
}

export async function kekRotate({ values, sources }: Parsed<typeof KEK_ROTATE_FLAGS>): Promise<void> {
  const newKek = keyOf(values['new-kek-file'], sources['new-kek-file'] ?? '--new-kek-file');
  const kekFile = values['kek-file'] ?? join(dataDirOf(values['data-dir']), 'kek');
  const kekSetting = sources['kek-file'] ?? '--kek-file';
  if (!existsSync(kekFile)) throw new ConfigError(`${kekSetting}: ${kekFile} does not exist; name this CA's KEK file with --kek-file, or its data dir with --data-dir`);
  if (kekId(keyOf(kekFile, kekSetting)) === kekId(newKek)) throw new ConfigError(`--new-kek-file: it holds the KEK already in ${kekFile}; generate a new one (head -c 32 /dev/urandom)`);
  const staged = stagedKekFile(kekFile);
  writeFileAtomic(staged, newKek.toString('base64') + '\n', 0o600);
  let rotated: KekRotationView;
  try {
    rotated = await adminClientFor(values).request<KekRotationView>('POST', '/v1/kek/rotate', {});
  } catch (err) {
    // Refused (4xx): nothing was rotated, and a spare KEK must not stay behind. Otherwise (a timeout,
    // a lost connection, a 5xx) the CA may have rotated: the staged key is kept for the operator.
    if (err instanceof CliError && err.status !== undefined && err.status >= 400 && err.status < 500) rmSync(staged, { force: true });
    else process.stderr.write(`the new KEK stays at ${staged}: the CA may have rotated; check with cairn kek status before deleting it\n`);
    throw err;
  }
  say(
    `key-encryption key rotated: ${rotated.resealed} of ${rotated.sealedValues} sealed values re-sealed under KEK ${rotated.kekId} (was ${rotated.previousKekId}); ` +
      `${rotated.kekFile} now holds it. Other replicas: put it in their --kek-file and send them SIGHUP (or restart them); then delete ${values['new-kek-file']}`,
  );
  printResult(values.json, rotated, () => rotated.kekId);
}

export async function kekStatus({ values }: Parsed<typeof KEK_STATUS_FLAGS>): Promise<void> {
  const status = await adminClientFor(values).request<KekStatusView>('GET', '/v1/kek');
  printResult(values.json, status, () =>
    `KEK ${status.kekId} (held: ${status.heldKekIds.join(', ')}); ${status.sealedValues} sealed values\n` +
    table([['SEALED UNDER', 'VALUES'], ...Object.entries(status.sealedUnder).map(([id, n]) => [id, String(n)])]),
  );
}
