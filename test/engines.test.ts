import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../lib/paths.js';

/**
 * `npm ci` warns EBADENGINE for every installed package whose `engines.node` excludes the running
 * Node. Our own `engines` promises Node 20; every package the lock file installs (dev dependencies
 * included: `npm test` needs them) must accept the oldest Node that promise admits.
 */
interface LockEntry {
  readonly version?: string;
  readonly engines?: { readonly node?: string } | readonly string[];
}

const root = packageRoot();
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };

/** Packages (by lock path) whose engines.node the given Node version does not satisfy. */
function refusing(nodeVersion: string): string[] {
  const out: string[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '') continue;
    const range = Array.isArray(entry.engines) ? undefined : (entry.engines as { node?: string } | undefined)?.node;
    if (range && !semver.satisfies(nodeVersion, range)) out.push(`${path.replace(/^.*node_modules\//, '')}@${entry.version} wants node ${range}`);
  }
  return out;
}

describe('engines', () => {
  const oldest = semver.minVersion(manifest.engines.node)!.version;

  it('our engines field is a Node 20 range', () => {
    expect(semver.major(oldest)).toBe(20);
  });

  it('every installed package accepts the oldest Node our engines field admits (no EBADENGINE from npm ci)', () => {
    expect(refusing(oldest)).toEqual([]);
  });

  it('and the Node running this suite', () => {
    expect(refusing(process.version)).toEqual([]);
  });
});
