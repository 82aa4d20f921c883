import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../lib/paths.js';

/** Imports point inward, toward the SPIFFE standard (shared/design.md). */
const ALLOWED: Record<string, string[]> = {
  spiffe: ['spiffe'],
  lib: ['lib', 'spiffe'],
  contract: ['contract', 'lib', 'spiffe'],
  ca: ['ca', 'contract', 'lib', 'spiffe'],
  'workload-api': ['workload-api', 'lib', 'spiffe'],
  'node-agent': ['node-agent', 'contract', 'workload-api', 'lib', 'spiffe'],
  cli: ['cli', 'ca', 'node-agent', 'workload-api', 'contract', 'lib', 'spiffe'],
};

const root = packageRoot();

function sourceFiles(dir: string): string[] {
  let out: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(sourceFiles(p));
    else if (/\.ts$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g)]
    .map((m) => m[1] ?? m[2] ?? m[3]!)
    .filter((s) => s.startsWith('.'));
}

describe('architecture', () => {
  for (const [layer, allowed] of Object.entries(ALLOWED)) {
    it(`${layer}/ imports only from ${allowed.join(', ')}`, () => {
      const violations: string[] = [];
      for (const file of sourceFiles(join(root, layer))) {
        for (const spec of importsOf(file)) {
          const target = relative(root, resolve(dirname(file), spec)).split('/')[0]!;
          if (!allowed.includes(target)) violations.push(`${relative(root, file)} → ${spec}`);
        }
      }
      expect(violations).toEqual([]);
    });
  }

  it('keeps SQL in store modules and the db layer', () => {
    const offenders = Object.keys(ALLOWED)
      .flatMap((layer) => sourceFiles(join(root, layer)))
      .filter((f) => !/\/(store|migrate|pg|embedded)\.ts$/.test(f) && !/\/ca\/db\//.test(f))
      .filter((f) => /\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b/.test(readFileSync(f, 'utf8')));
    expect(offenders.map((f) => relative(root, f))).toEqual([]);
  });

  it('keeps domain code off the wall clock', () => {
    const offenders = ['spiffe', 'ca', 'node-agent', 'workload-api']
      .flatMap((layer) => sourceFiles(join(root, layer)))
      .filter((f) => !/\/main\.ts$/.test(f))
      .filter((f) => /Date\.now\(\)|new Date\(\)/.test(readFileSync(f, 'utf8')));
    expect(offenders.map((f) => relative(root, f))).toEqual([]);
  });

  it('accumulates no awaited value in place (`x += await f()` reads x before it awaits)', () => {
    // Two async paths doing `issued += await batch()` each add to the value read before their await,
    // so one overwrites the other's count: the agent-api bench reported half the SVIDs it got for five days.
    const code = (f: string): string => readFileSync(f, 'utf8').split('\n').filter((l) => !/^\s*(\/\/|\*|\/\*)/.test(l)).map((l) => l.replace(/\s\/\/.*$/, '')).join('\n');
    const offenders = [...Object.keys(ALLOWED), 'bench', 'test']
      .flatMap((layer) => sourceFiles(join(root, layer)))
      .filter((f) => relative(root, f) !== 'test/architecture.test.ts') // this rule names the pattern
      .filter((f) => /[\w\]).]\s*[-+*/]=\s*await\b/.test(code(f)));
    expect(offenders.map((f) => relative(root, f))).toEqual([]);
  });
});
