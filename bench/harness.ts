import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { packageRoot } from '../lib/paths.js';

/** Runs `fn` repeatedly for about `ms` milliseconds; returns operations per second. */
export function opsPerSecond(fn: () => void, ms = 400): number {
  for (let i = 0; i < 50; i++) fn(); // warm-up
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 16; i++) fn();
    n += 16;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

export async function opsPerSecondAsync(fn: () => Promise<unknown>, ms = 400): Promise<number> {
  for (let i = 0; i < 5; i++) await fn();
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    await fn();
    n++;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};

/**
 * Measures a candidate against its raw baseline in alternating rounds, so machine noise hits both
 * alike; the reported ratio is the median of per-round ratios.
 */
export function compare(baseline: () => void, candidate: () => void, rounds = 7, ms = 400): { baseline: number; candidate: number; ratio: number } {
  const b: number[] = [];
  const c: number[] = [];
  const r: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const x = opsPerSecond(baseline, ms);
    const y = opsPerSecond(candidate, ms);
    b.push(x);
    c.push(y);
    r.push(y / x);
  }
  return { baseline: median(b), candidate: median(c), ratio: median(r) };
}

export const fmt = (n: number): string => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(2));

export function machine(): string {
  return `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}`;
}

/** Replaces the section between <!-- bench:NAME --> markers in BENCHMARKS.md (appends if absent). */
export function writeSection(name: string, markdown: string): void {
  const file = join(packageRoot(), 'BENCHMARKS.md');
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const block = `${start}\n${markdown.trim()}\n${end}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n\nRegenerate with `npm run bench`. Every figure is a ratio against a raw baseline measured in the same run.\n';
  const re = new RegExp(`${start}[\\s\\S]*?${end}`);
  text = re.test(text) ? text.replace(re, block) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, text);
}
