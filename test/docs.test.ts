import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../lib/paths.js';

/** What a new user reads first must hold in a fresh clone. */
const root = packageRoot();
const DOCS = ['README.md', 'deploy/kubernetes/README.md'];
const SOURCE_DIRS = ['ca', 'cli', 'lib', 'node-agent', 'workload-api', 'contract', 'spiffe'];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === 'gen' ? [] : sourceFiles(p);
    return /\.ts$/.test(name) && !name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Where a reference in `doc` points, if it is one to a file of this repository; undefined for anything else. */
function repoTarget(doc: string, ref: string): string | undefined {
  const path = ref.replace(/[#?].*$/, '');
  if (!path || /^[a-z][a-z0-9+.-]*:/i.test(path) || path.startsWith('/') || /[<>*…\s$]/.test(path)) return undefined;
  if (path.startsWith('./') || path.startsWith('../')) return resolve(root, dirname(doc), path);
  const first = path.split('/')[0]!;
  // a path from the repository's root (deploy/…, test/…, BENCHMARKS.md), or a file beside the document
  if (existsSync(join(root, first)) && (path.includes('/') || /\.\w+$/.test(path))) return resolve(root, path);
  if (existsSync(resolve(root, dirname(doc), first))) return resolve(root, dirname(doc), path);
  return undefined;
}

describe('documentation', () => {
  for (const doc of DOCS) {
    it(`${doc}: every link and file reference resolves inside the repository`, () => {
      const text = readFileSync(join(root, doc), 'utf8');
      const refs = [...text.matchAll(/\]\(([^)\s]+)\)/g), ...text.matchAll(/`([^`\s]+)`/g)].map((m) => m[1]!);
      const broken = refs
        .map((ref) => ({ ref, target: repoTarget(doc, ref) }))
        .filter(({ target }) => target !== undefined)
        .filter(({ target }) => relative(root, target!).startsWith('..') || !existsSync(target!))
        .map(({ ref }) => ref);
      expect(broken).toEqual([]);
    });
  }

  it('the README documents every environment variable the code reads, in its Configuration section', () => {
    // process.env.X, and every CAIRN_* name however it is read (some code passes the environment around)
    const read = new Set(
      SOURCE_DIRS.flatMap((d) => sourceFiles(join(root, d))).flatMap((f) => {
        const text = readFileSync(f, 'utf8');
        return [...text.matchAll(/process\.env(?:\.([A-Z][A-Z0-9_]*)|\[['"]([A-Z][A-Z0-9_]*)['"]\])|\b(CAIRN_[A-Z0-9_]+)\b/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
      }),
    );
    expect(read.has('CAIRN_DATA_DIR')).toBe(true); // the scan itself works
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const section = /^## Configuration\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1] ?? '';
    expect([...read].filter((name) => !section.includes(`\`${name}\``)).sort()).toEqual([]);
  });

  it("the quick start says what `npm ci` needs and how long the tests take", () => {
    const quickStart = /^## Quick start\n([\s\S]*?)(?=^## )/m.exec(readFileSync(join(root, 'README.md'), 'utf8'))?.[1] ?? '';
    for (const need of ['python3', 'make', 'C compiler']) expect(quickStart).toContain(need);
    expect(quickStart).toMatch(/\d+ minutes/);
  });
});
