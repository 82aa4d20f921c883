import { errorResponses } from '../../contract/common.js';
import { KekPaths, KekRotationView, KekStatusView } from '../../contract/kek-api.js';
import { noteChange } from '../admin-auth/access.js';
import type { App } from '../http/types.js';
import type { KekService } from './service.js';

/** `cairn kek status | rotate`. No route takes or returns key material, or a path to one. */
export function registerKekRoutes(app: App, kek: KekService): void {
  const tags = ['key-encryption key'];
  app.get(KekPaths.status, {
    schema: { tags, summary: 'This replica\'s key-encryption key (its public id) and which KEK sealed each stored value', response: { 200: KekStatusView, ...errorResponses } },
  }, async () => kek.status());

  app.post(KekPaths.rotate, {
    schema: {
      tags,
      summary: 'Re-seal every stored private key and secret under the new KEK that cairn kek rotate put beside this CA\'s KEK file, in one transaction',
      response: { 200: KekRotationView, ...errorResponses },
    },
  }, async (req) => {
    const rotated = await kek.rotate(req.actor);
    noteChange(req, { target: 'kek', old: { kekId: rotated.previousKekId }, new: { kekId: rotated.kekId } });
    return rotated;
  });
}
