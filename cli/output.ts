/** Results alone on stdout (so scripts can capture them); messages on stderr. */
export function printResult(json: boolean, value: unknown, human: () => string): void {
  const text = json ? JSON.stringify(value, null, 2) : human();
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

export function say(message: string): void {
  process.stderr.write(message + '\n');
}

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** A server's banner: written once start-up is complete, alone on stdout (its logs go to stderr). */
export function banner(lines: readonly string[]): void {
  process.stdout.write(lines.join('\n') + '\n');
}
