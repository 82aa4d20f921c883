import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from './paths.js';

/** Where `npm install` builds the native addon `name` (binding.gyp, scripts/build-addon.sh). */
export function nativeAddonPath(name: string, root: string = packageRoot(import.meta.url)): string {
  return join(root, 'build', 'Release', `${name}.node`);
}

/** Loads a native addon, saying where it was looked for and what builds it when it is missing. */
export function loadNativeAddon<T>(name: string, root: string = packageRoot(import.meta.url)): T {
  const file = nativeAddonPath(name, root);
  try {
    return createRequire(import.meta.url)(file) as T;
  } catch (err) {
    throw new Error(`cannot load ${file} (built by npm install, see scripts/build-addon.sh): ${(err as Error).message}`);
  }
}
