import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './paths.js';

/**
 * The version of this Cairn installation, from its package.json. Processes read it once at start-up
 * (for /healthz, the start banner and schema messages) and pass it on.
 */
export function cairnVersion(root: string = packageRoot(import.meta.url)): string {
  try {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof version === 'string' && version !== '' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}
