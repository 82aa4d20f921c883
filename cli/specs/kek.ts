import { command, flags, group, type ValueCheck } from '../flags.js';
import { readableFile } from '../settings.js';
import { ADMIN_FLAGS } from './common.js';

const fileToRead = ((v, where) => (readableFile(v, where), v)) satisfies ValueCheck;

export const KEK_ROTATE_FLAGS = flags({
  'new-kek-file': { type: 'string', value: 'FILE', required: true, check: fileToRead, complete: 'file', description: 'the new key-encryption key: 32 bytes raw, hex or base64, mode 0600 (e.g. head -c 32 /dev/urandom)' },
  'kek-file': { type: 'string', value: 'FILE', env: ['CAIRN_KEK_FILE'], check: fileToRead, complete: 'file', description: "this CA's KEK file, as cairn ca start has it (default <data-dir>/kek)" },
  ...ADMIN_FLAGS,
});
export const KEK_STATUS_FLAGS = ADMIN_FLAGS;

const kek = () => import('../commands/kek.js');

export const kekGroup = group({
  name: 'kek',
  summary: 'the key-encryption key: status, rotate (re-seal every stored private key)',
  description: `The key-encryption key (KEK) seals every CA, JWT and TLS private key and every secret in the database.
The KEK itself never passes through the admin API: rotate runs on the CA's host, puts the new key beside
the CA's KEK file, and asks the CA to take it.`,
  commands: [
    command({
      name: 'rotate',
      summary: 're-seal every stored private key under a new KEK, in one transaction, on a live CA',
      description: `Run on the CA's host, with the CA's --kek-file (or --data-dir), as a user who may write beside it.
The new key is put at <kek-file>.next; the CA re-seals every sealed value under it in one transaction,
checks each opens with the new KEK alone, and moves it over <kek-file>. Other replicas sharing the
database: put the new key in their --kek-file and send them SIGHUP (or restart them).`,
      flags: KEK_ROTATE_FLAGS,
      examples: ['head -c 32 /dev/urandom > kek.new && chmod 600 kek.new && cairn kek rotate --new-kek-file kek.new && shred -u kek.new'],
      run: async (args) => (await kek()).kekRotate(args),
    }),
    command({ name: 'status', summary: "the CA's KEK id and which KEK sealed each stored value", flags: KEK_STATUS_FLAGS, run: async (args) => (await kek()).kekStatus(args) }),
  ],
});
