import { Type, type Static } from 'typebox';
import { Timestamp } from './common.js';

/** The key-encryption key (issue 13): its status and `cairn kek rotate`. Never the key itself. */
export const KekPaths = {
  status: '/v1/kek',
  rotate: '/v1/kek/rotate',
} as const;

const KekId = Type.String({ pattern: '^[0-9a-f]{16}$', description: 'a KEK\'s public id: the first 8 bytes of HMAC-SHA-256(KEK, label), hex' });

export const KekStatusView = Type.Object({
  kekId: KekId,
  heldKekIds: Type.Array(KekId, { description: 'every KEK this replica holds in memory: the current one seals, all of them open' }),
  sealedValues: Type.Integer({ description: 'private keys and secrets sealed in the database' }),
  sealedUnder: Type.Record(Type.String(), Type.Integer(), { description: 'how many sealed values each KEK held by this replica opens; "unknown": none it holds does' }),
});
export type KekStatusView = Static<typeof KekStatusView>;

export const KekRotationView = Type.Object({
  kekId: KekId,
  previousKekId: KekId,
  sealedValues: Type.Integer(),
  resealed: Type.Integer(),
  kekFile: Type.String({ description: 'the file that now holds the new KEK on this replica' }),
  rotatedAt: Timestamp,
});
export type KekRotationView = Static<typeof KekRotationView>;
